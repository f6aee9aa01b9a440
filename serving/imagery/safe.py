"""A Sentinel-2 L2A SAFE folder as a STAC item, so that SAFE and STAC share one path.

The item carries what loading and harmonising need and nothing more: one asset per band
at the finest resolution present (``R10m`` before ``R20m`` before ``R60m``), the ``SCL``
asset, the projection of each asset (``proj:code``, ``proj:shape``,
``proj:transform``, read from the band files themselves), the ``s2:processing_baseline``
and each band's BOA offset as ``raster:bands`` ``offset``/``scale`` (from
``MTD_MSIL2A.xml``'s ``BOA_ADD_OFFSET``), as Earth Search's items do.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds

from serving.imagery.harmonise import QUANTIFICATION

#: Band names in the order of the ``bandId`` of ``MTD_MSIL2A.xml``.
SAFE_BAND_IDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
    "B12",
)
#: Common names of the Sentinel-2 bands (STAC eo extension).
COMMON_NAMES: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge",
    "B06": "rededge", "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22",
}
_RESOLUTIONS = ("R10m", "R20m", "R60m")
_FILE = re.compile(r"_(B\d[\dA]|SCL)_(\d+)m\.(jp2|tif{1,2})$", re.IGNORECASE)


class SafeError(ValueError):
    """A folder that is not a readable Sentinel-2 L2A SAFE product."""


def _text(root: ET.Element, tag: str) -> str | None:
    found = root.find(f".//{tag}")
    return found.text.strip() if found is not None and found.text else None


def read_product_metadata(safe: Path) -> dict[str, Any]:
    """Date, platform, processing baseline and BOA offsets from ``MTD_MSIL2A.xml``."""
    mtd = safe / "MTD_MSIL2A.xml"
    if not mtd.is_file():
        raise SafeError(f"{safe} has no MTD_MSIL2A.xml: not an L2A SAFE product")
    try:
        root = ET.parse(mtd).getroot()
    except ET.ParseError as err:
        raise SafeError(f"{mtd} is not readable XML: {err}") from err
    start = _text(root, "PRODUCT_START_TIME")
    if start is None:
        raise SafeError(f"{mtd} gives no PRODUCT_START_TIME")
    offsets = {
        SAFE_BAND_IDS[int(e.get("band_id", -1))]: float(e.text or 0)
        for e in root.iter("BOA_ADD_OFFSET")
        if e.get("band_id") is not None and 0 <= int(e.get("band_id", -1)) < 13
    }
    quantification = float(_text(root, "BOA_QUANTIFICATION_VALUE") or QUANTIFICATION)
    return {
        "datetime": datetime.fromisoformat(start.replace("Z", "+00:00")),
        "platform": (_text(root, "SPACECRAFT_NAME") or "sentinel-2").lower(),
        "processing_baseline": _text(root, "PROCESSING_BASELINE"),
        "boa_offsets": offsets,
        "quantification": quantification,
    }


def band_files(safe: Path) -> dict[str, Path]:
    """Each band's (and SCL's) file at the finest resolution present in the product."""
    granules = sorted((safe / "GRANULE").glob("*/IMG_DATA"))
    if not granules:
        raise SafeError(f"{safe} has no GRANULE/*/IMG_DATA folder")
    found: dict[str, Path] = {}
    for resolution in _RESOLUTIONS:
        for path in sorted((granules[0] / resolution).glob("*")):
            match = _FILE.search(path.name)
            if match and match.group(1).upper() not in found:
                found[match.group(1).upper()] = path
    return found


def safe_to_item(safe: str | Path) -> Any:
    """A ``pystac.Item`` describing one SAFE product's bands, SCL and metadata.

    Raises:
        SafeError: No metadata, no image folder, or a band file that cannot be read.
    """
    safe = Path(safe)
    meta = read_product_metadata(safe)
    files = band_files(safe)
    if not files:
        raise SafeError(f"{safe} holds no band files under GRANULE/*/IMG_DATA")
    try:
        return item_from_files(
            safe.name.removesuffix(".SAFE"), meta["datetime"], files,
            properties={"platform": meta["platform"],
                        "s2:processing_baseline": meta["processing_baseline"],
                        "cacaomap:source": str(safe.resolve())},
            offsets=meta["boa_offsets"], quantification=meta["quantification"])
    except rasterio.errors.RasterioIOError as err:
        raise SafeError(f"cannot read a band file of {safe.name}: {err}") from err


def item_from_files(item_id: str, when: datetime, files: dict[str, Path],
                    properties: dict[str, Any], offsets: dict[str, float] | None = None,
                    quantification: float = QUANTIFICATION) -> Any:
    """A Sentinel-2 L2A ``pystac.Item`` from band files (name → path; ``SCL`` too).

    Each asset gets its projection from the file itself, ``raster:bands`` with ``scale``
    and the BOA ``offset`` (``offsets`` in DN, default 0), and ``eo:bands``.
    """
    import pystac

    offsets = offsets or {}
    assets: dict[str, pystac.Asset] = {}
    finest: tuple[tuple[float, float, float, float], float] | None = None
    for name, path in sorted(files.items()):
        with rasterio.open(path) as src:
            shape, transform, crs = (src.height, src.width), src.transform, src.crs
            if finest is None or src.res[0] < finest[1]:
                finest = (transform_bounds(src.crs, "EPSG:4326", *src.bounds), src.res[0])
        extra: dict[str, Any] = {
            "proj:code": crs.to_string() if crs else None,
            "proj:shape": list(shape),
            "proj:transform": list(transform)[:6],
        }
        if name == "SCL":
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint8"}]
        else:
            scale = 1 / quantification
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "scale": scale,
                                      "offset": offsets.get(name, 0.0) * scale}]
            extra["eo:bands"] = [{"name": name, "common_name": COMMON_NAMES.get(name)}]
        assets[name] = pystac.Asset(href=str(Path(path).resolve()), roles=["data"],
                                    media_type=pystac.MediaType.COG
                                    if str(path).endswith(".tif") else None,
                                    extra_fields=extra)
    if finest is None:
        raise SafeError(f"item {item_id} has no band files")
    west, south, east, north = finest[0]
    item = pystac.Item(
        id=item_id,
        geometry={"type": "Polygon", "coordinates": [[
            [west, south], [east, south], [east, north], [west, north], [west, south]]]},
        bbox=[west, south, east, north], datetime=when,
        properties={"constellation": "sentinel-2", **properties},
    )
    for key, asset in assets.items():
        item.add_asset(key, asset)
    return item
