"""Imagery sources behind one small interface: acquisitions on one grid.

An :class:`Acquisition` is one date of imagery as the rest of cacaomap needs it: the
bands on a target grid as harmonised digital numbers (NaN where not observed), a clear
mask (True = the ground was seen), and metadata (platform, processing baseline, mask
source, item id). Everything is a lazy dask array: nothing is read until a composite is
computed, block by block.

Sources, one path each:

- STAC items (an ItemCollection or a static catalogue on disk, :func:`items_from_file`;
  a STAC API search, :func:`search_items`, for the CLI only), loaded with ``odc-stac``
  onto one :class:`Grid` (20 m bands resampled bilinear, SCL nearest);
- SAFE folders, turned into STAC items first (:func:`serving.imagery.safe.safe_to_item`);
- stacked GeoTIFFs with optional mask files (:mod:`serving.imagery.geotiffs`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from serving.imagery.harmonise import boa_offset, harmonised, processing_baseline
from serving.imagery.hrefs import check_items
from serving.imagery.masks import MaskSource, csmask_clear, scl_clear_buffered
from serving.imagery.safe import COMMON_NAMES, safe_to_item

#: Asset keys that hold the scene classification layer.
SCL_KEYS = ("SCL", "scl")
#: Asset keys of Earth Search v1's ``sentinel-2-l2a`` items where its name is not
#: the band's common name (its red-edge bands are numbered, its SCL is lower case).
EARTH_SEARCH_KEYS = {"B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
                     "B8A": "nir08", "B09": "nir09", "B01": "coastal"}
#: Side of the square dask chunks, in pixels of the target grid.
DEFAULT_CHUNK = 512
#: Pixels by which SCL clouds and shadows are grown (20 m at 10 m pixels).
DEFAULT_CLOUD_BUFFER = 2
#: Pixels of context the cloud model sees beyond each block (its tiles overlap).
CSMASK_CONTEXT = 32


class ImageryError(ValueError):
    """Imagery that cannot be made into acquisitions; the message names the problem."""


@dataclass(frozen=True)
class Grid:
    """The target grid every acquisition is read onto.

    Attributes:
        crs: CRS of the grid (e.g. ``EPSG:32718``).
        resolution: Pixel size in CRS units.
        bounds: (left, bottom, right, top) in CRS units.
    """

    crs: str
    resolution: float
    bounds: tuple[float, float, float, float]

    def geobox(self) -> Any:
        """The grid as an ``odc.geo`` GeoBox: the upper-left corner on ``bounds``."""
        from odc.geo.geobox import GeoBox
        from rasterio.transform import Affine

        return GeoBox(self.shape, Affine(self.resolution, 0, self.bounds[0], 0,
                                         -self.resolution, self.bounds[3]), self.crs)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels: the bounds rounded to whole pixels."""
        left, bottom, right, top = self.bounds
        return (max(1, round((top - bottom) / self.resolution)),
                max(1, round((right - left) / self.resolution)))


@dataclass
class Acquisition:
    """One date of imagery on the target grid.

    Attributes:
        item_id: The STAC item id (or file name).
        datetime: Acquisition time (UTC).
        bands: (bands, H, W) dask array of float32 harmonised DN, NaN = no data.
        clear: (H, W) dask array of bool, True = clear view of the ground.
        band_names: Names of ``bands`` in order.
        platform: Platform (e.g. ``sentinel-2a``).
        processing_baseline: ``NN.NN`` or None.
        offsets: BOA offset removed from each band, in DN.
        mask_source: Where ``clear`` came from.
    """

    item_id: str
    datetime: dt.datetime
    bands: Any
    clear: Any
    band_names: list[str]
    platform: str = ""
    processing_baseline: str | None = None
    offsets: dict[str, float] = field(default_factory=dict)
    mask_source: MaskSource = "scl"


def items_from_file(path: str | Path) -> list[Any]:
    """The items of an ItemCollection, a catalogue or a single item JSON on disk."""
    import pystac

    path = Path(path)
    if not path.is_file():
        raise ImageryError(f"no STAC file at {path}")
    obj: Any
    try:
        obj = pystac.read_file(str(path))
    except Exception as err:  # pystac raises many kinds on bad JSON
        try:
            obj = pystac.ItemCollection.from_file(str(path))
        except Exception:
            raise ImageryError(f"{path} is not a STAC item, collection or catalogue: "
                               f"{err}") from err
    if isinstance(obj, pystac.Item):
        items = [obj]
    elif isinstance(obj, pystac.ItemCollection):
        items = list(obj)
    elif isinstance(obj, pystac.Catalog):
        obj.make_all_asset_hrefs_absolute()
        items = list(obj.get_items(recursive=True))
    else:
        raise ImageryError(f"{path} holds a STAC {type(obj).__name__}, not items")
    for item in items:
        item.make_asset_hrefs_absolute()
    return items


def items_from_safe(folders: Iterable[str | Path]) -> list[Any]:
    """STAC items made from SAFE L2A folders (one path with STAC items)."""
    return [safe_to_item(f) for f in folders]


#: How item hrefs can be signed after a search (``--sign``).
SIGNERS = ("none", "planetary-computer")


def sign_items(items: list[Any], sign: str = "none") -> list[Any]:
    """Items with hrefs a reader can open: ``planetary-computer`` signs Azure blob hrefs.

    Planetary Computer's assets are private blobs; ``planetary_computer.sign`` appends a
    SAS token (fetched, then cached, from its token API) to each blob href and leaves
    other hrefs alone.
    """
    if sign == "none":
        return items
    if sign != "planetary-computer":
        raise ImageryError(f"unknown signer {sign!r}; use one of {', '.join(SIGNERS)}")
    try:
        import planetary_computer
    except ImportError as err:
        raise ImageryError("--sign planetary-computer needs the planetary-computer "
                           "package (pip install planetary-computer)") from err
    return [planetary_computer.sign(item) for item in items]


def search_items(url: str, bbox: Sequence[float], datetime: str, collection: str,
                 max_cloud: float | None = None, max_items: int = 1000,
                 sign: str = "none") -> list[Any]:
    """Items of a STAC API search (pystac-client), every page. CLI only, never the service.

    Args:
        url: The STAC API's root.
        bbox: west, south, east, north in degrees.
        datetime: ``START/END`` (RFC 3339 dates or times).
        collection: The collection searched.
        max_cloud: Only items with ``eo:cloud_cover`` under this (percent).
        max_items: The most items taken; a search that matches more is refused (narrow
            the bbox or the period), never cut short in silence.
        sign: How hrefs are signed (:func:`sign_items`).

    Raises:
        ImageryError: The API cannot be searched, or the search matches too much.
    """
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    query = {"eo:cloud_cover": {"lt": max_cloud}} if max_cloud is not None else None
    try:
        search = Client.open(url).search(collections=[collection], bbox=list(bbox),
                                         datetime=datetime, query=query,
                                         max_items=max_items + 1)
        items = list(search.items())
    except (APIError, OSError, ValueError) as err:
        raise ImageryError(f"cannot search the STAC API at {url}: {err}") from err
    if len(items) > max_items:
        raise ImageryError(f"the search of {collection} matched more than {max_items} "
                           f"items: narrow --bbox or --period, or raise --max_items")
    return sign_items(items, sign)


def in_period(items: Iterable[Any], period: str) -> list[Any]:
    """Items whose datetime falls in ``start/end`` (ISO dates, both days included)."""
    try:
        start_s, end_s = period.split("/")
        start = dt.date.fromisoformat(start_s)
        end = dt.date.fromisoformat(end_s)
    except ValueError as err:
        raise ImageryError(f"a period is START/END in ISO dates (2020-01-01/2020-12-31); "
                           f"got {period!r}") from err
    if end < start:
        raise ImageryError(f"the period {period} ends before it starts")
    chosen = [i for i in items if i.datetime and start <= i.datetime.date() <= end]
    if not chosen:
        raise ImageryError(f"no acquisition in the period {period}")
    return chosen


def asset_key(item: Any, band: str) -> str:
    """The key of the asset holding ``band``: by key, by eo:bands name or common name."""
    if band in item.assets:
        return band
    wanted = {band, band.lower(), COMMON_NAMES.get(band, band), EARTH_SEARCH_KEYS.get(band)}
    for key, asset in item.assets.items():
        if key in wanted:
            return str(key)
        for info in asset.extra_fields.get("eo:bands", []) or []:
            if info.get("name") == band:
                return str(key)
    for key, asset in item.assets.items():
        for info in asset.extra_fields.get("eo:bands", []) or []:
            if info.get("common_name") == COMMON_NAMES.get(band) and band not in (
                    "B05", "B06", "B07"):
                return str(key)
    raise ImageryError(f"item {item.id} has no asset for band {band}")


def scl_key(item: Any) -> str | None:
    """The key of the item's SCL asset, if it has one."""
    return next((k for k in SCL_KEYS if k in item.assets), None)


def _asset_crs(item: Any, key: str) -> str | None:
    fields = item.assets[key].extra_fields
    code = fields.get("proj:code") or (
        f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    return code or item.properties.get("proj:code")


def grid_of_first_item(items: Sequence[Any], band: str,
                       resolution: float | None = None) -> Grid:
    """The grid of the first item's ``band`` asset (CRS, resolution and bounds)."""
    from rasterio.transform import Affine, array_bounds

    item = items[0]
    key = asset_key(item, band)
    fields = item.assets[key].extra_fields
    crs = _asset_crs(item, key)
    if crs and fields.get("proj:transform") and fields.get("proj:shape"):
        transform = Affine(*fields["proj:transform"][:6])
        height, width = fields["proj:shape"]
    else:
        with rasterio.open(item.assets[key].href) as src:
            crs, transform, height, width = (src.crs.to_string(), src.transform,
                                             src.height, src.width)
    if crs is None:
        raise ImageryError(f"item {item.id} does not say the CRS of {band}")
    west, south, east, north = array_bounds(height, width, transform)
    return Grid(crs=str(crs), resolution=float(resolution or transform.a),
                bounds=(west, south, east, north))


def readable(item: Any, keys: Sequence[str]) -> str | None:
    """None if every asset opens; otherwise why the first one that does not fails."""
    for key in keys:
        href = item.assets[key].href
        try:
            with rasterio.open(href):
                pass
        except rasterio.errors.RasterioIOError as err:
            return f"{key}: {err}"
    return None


@dataclass
class Loaded:
    """Acquisitions read onto one grid, and what happened on the way."""

    acquisitions: list[Acquisition]
    grid: Grid
    skipped: dict[str, str] = field(default_factory=dict)
    reprojected: list[str] = field(default_factory=list)


def load_items(
    items: Sequence[Any],
    bands: Sequence[str],
    *,
    mask: MaskSource = "scl",
    grid: Grid | None = None,
    chunk: int = DEFAULT_CHUNK,
    snow_is_clear: bool = False,
    min_items: int = 1,
    cloud_buffer: int = DEFAULT_CLOUD_BUFFER,
    remote: bool = False,
) -> Loaded:
    """STAC items as acquisitions on one grid, lazily (dask), harmonised and masked.

    Args:
        items: STAC items (``pystac.Item``), e.g. of one period.
        bands: Band names in the order the model reads them.
        mask: ``scl`` (the items' SCL), ``csmask`` (the ukis-csmask model) or ``none``.
        grid: Target grid (default: the first item's grid of the first band).
        chunk: Dask chunk side in pixels.
        snow_is_clear: Count SCL snow as clear.
        min_items: Fewest readable items to go on with.
        cloud_buffer: Pixels of the target grid by which SCL clouds and shadows are
            grown (their faint edges are not flagged); the cloud model buffers its own.
        remote: Whether remote (``http(s)``, ``s3``) asset hrefs may be read
            (:mod:`serving.imagery.hrefs`); local raster files always may.

    Returns:
        The acquisitions in time order, the grid, the items skipped (id → why) and the
        items reprojected from another CRS.

    Raises:
        ImageryError: No items, a band missing from an item, no SCL with ``mask=scl``,
            fewer than ``min_items`` readable items.
        HrefError: An asset href imagery does not open (a VRT, a ``/vsi`` path, a
            remote asset not asked for). An item without an asset for
            one of the bands is skipped and listed (an error only if all are).
    """
    import odc.stac

    if not items:
        raise ImageryError("no acquisitions to load")
    skipped: dict[str, str] = {}
    complete = []
    for item in sorted(items, key=lambda i: (i.datetime, i.id)):
        try:
            complete.append((item, [asset_key(item, b) for b in bands]))
        except ImageryError as err:  # an item of a search without one of the bands
            skipped[item.id] = str(err)
    if not complete:
        raise ImageryError(next(iter(skipped.values())))
    items = [item for item, _ in complete]
    keys = complete[0][1]
    for item, item_keys in complete[1:]:
        for band, key, own in zip(bands, keys, item_keys, strict=True):
            if own != key:
                raise ImageryError(f"item {item.id} names band {band} {own!r}, not "
                                   f"{key!r} as {items[0].id} does")
    scl = None
    if mask == "scl":
        missing = [i.id for i in items if scl_key(i) is None]
        if missing:
            raise ImageryError(f"item {missing[0]} has no SCL asset: choose --mask csmask "
                               f"(the cloud model) or --mask none")
        scl = scl_key(items[0])
    check_items(items, keys + ([scl] if scl else []), remote)  # before GDAL opens any
    usable = []
    for item in items:
        why = readable(item, keys + ([scl] if scl else []))
        if why:
            skipped[item.id] = why
        else:
            usable.append(item)
    if len(usable) < max(1, min_items):
        raise ImageryError(f"only {len(usable)} of {len(items)} items are readable (at "
                           f"least {max(1, min_items)} needed); skipped: {skipped}")
    grid = grid or grid_of_first_item(usable, bands[0])
    reprojected = [i.id for i in usable if (_asset_crs(i, keys[0]) or grid.crs) != grid.crs]
    load_keys = keys + ([scl] if scl else [])
    ds = odc.stac.load(
        usable, bands=load_keys, geobox=grid.geobox(), groupby="id",
        chunks={"x": chunk, "y": chunk},
        resampling={"*": "bilinear", **({scl: "nearest"} if scl else {})},
        preserve_original_order=True,
    )
    acquisitions = []
    for t, item in enumerate(usable):
        offsets = {b: boa_offset(item.properties, item.assets[k].to_dict())
                   for b, k in zip(bands, keys, strict=True)}
        planes = [ds[k].data[t].map_blocks(harmonised, offsets[b], dtype=np.float32)
                  for b, k in zip(bands, keys, strict=True)]
        import dask.array as da

        stack = da.stack(planes)
        observed = da.isfinite(stack).all(axis=0)
        if scl:
            clear = ds[scl].data[t].map_overlap(
                scl_clear_buffered, depth=cloud_buffer, boundary="none",
                pixels=cloud_buffer, snow_is_clear=snow_is_clear, dtype=bool) & observed
        elif mask == "csmask":
            clear = csmask_of(stack, bands, cloud_buffer) & observed
        else:
            clear = observed
        baseline = processing_baseline(item.properties)
        acquisitions.append(Acquisition(
            item_id=item.id, datetime=item.datetime, bands=stack, clear=clear,
            band_names=list(bands), platform=str(item.properties.get("platform", "")),
            processing_baseline=f"{baseline[0]:02d}.{baseline[1]:02d}" if baseline else None,
            offsets=offsets, mask_source=mask,
        ))
    return Loaded(acquisitions, grid, skipped, reprojected)


def csmask_of(stack: Any, bands: Sequence[str], buffer: int) -> Any:
    """The cloud model over a lazy (bands, H, W) stack, with context across blocks."""
    return stack.map_overlap(
        _csmask_block, depth=(0, CSMASK_CONTEXT, CSMASK_CONTEXT), boundary="none",
        bands=list(bands), buffer=buffer, dtype=bool).max(axis=0)


def _csmask_block(block: np.ndarray, bands: list[str], buffer: int) -> np.ndarray:
    """The cloud model on one block of harmonised DN (reflectance = DN / 10000).

    Returns the clear mask repeated over the band axis (``map_overlap`` keeps shapes).
    """
    clear = csmask_clear(np.nan_to_num(block) / 10000.0, bands, invalid_buffer=buffer)
    return np.broadcast_to(clear, block.shape)
