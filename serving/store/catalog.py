"""The store's STAC catalogue: one collection per period, one item per built cell.

A self-contained static catalogue (pystac) at the store's root: ``catalog.json``, and
per period a collection whose items are the cells, each with its composite, class map
and confidence as Cloud Optimized GeoTIFF assets, the projection of its grid, the
period as ``start_datetime``/``end_datetime``, and its lineage (the acquisitions
composited, the model, the content key).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from serving.store.grid import Cell, footprint_lonlat
from serving.store.reader import PERIODS, cell_dir

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
ASSETS = {"composite": ("composite of clear observations (bands + clear_count)", ["data"]),
          "classes": ("land-cover class map", ["data", "classification"]),
          "confidence": ("per-pixel confidence of the class, percent", ["quality"]),
          "sensors": ("which sensor each pixel was classified from: 1 optical, 2 radar "
                      "alone, 0 not classified", ["quality"])}


def _period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    start, end = period.split("/")
    return (dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC),
            dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC, hour=23, minute=59,
                                                   second=59))


def write_catalog(store: Path, meta: dict[str, Any], cells: list[Cell]) -> Path:
    """Write ``catalog.json`` and the collections and items of the built cells."""
    import pystac


    catalog = pystac.Catalog(id="cacaomap-store",
                             description="cacaomap baseline store: composites, class "
                                         "maps and confidence per cell and period")
    for name in PERIODS:
        start, end = _period_bounds(meta["periods"][name])
        items = []
        versions = {c["id"]: c.get("versions") or {} for c in meta["cells"]}
        for cell in cells:
            folder = cell_dir(store, cell.id, name, versions.get(cell.id, {}).get(name))
            marker = folder / "done.json"
            if not marker.is_file() or not (folder / "classes.tif").is_file():
                continue
            done = json.loads(marker.read_text())
            footprint = footprint_lonlat(cell)
            item = pystac.Item(
                id=f"{cell.id}_{name}", geometry=mapping(footprint),
                bbox=list(footprint.bounds), datetime=None,
                start_datetime=start, end_datetime=end,
                properties={"proj:code": cell.utm.crs,
                            "proj:shape": [cell.size, cell.size],
                            "proj:transform": list(cell.transform)[:6],
                            "cacaomap:cell": cell.id, "cacaomap:period": name,
                            "cacaomap:items": done.get("used", []),
                            "cacaomap:content_key": done.get("key"),
                            "cacaomap:model": meta["model"]["onnx_sha256"]}
                | ({"cacaomap:radar_items": done["radar_items"],
                    "cacaomap:radar_only_fraction": done.get("radar_only_fraction")}
                   if "radar_items" in done else {}))
            for layer, (title, roles) in ASSETS.items():
                path = folder / f"{layer}.tif"
                if path.is_file():
                    item.add_asset(layer, pystac.Asset(str(path.resolve()), title=title,
                                                       media_type=COG, roles=roles))
            items.append(item)
        if not items:
            continue
        footprints = [i.bbox for i in items if i.bbox]
        spatial = [min(b[0] for b in footprints), min(b[1] for b in footprints),
                   max(b[2] for b in footprints), max(b[3] for b in footprints)]
        collection = pystac.Collection(
            id=name, description=f"{name} period {meta['periods'][name]}",
            extent=pystac.Extent(pystac.SpatialExtent([spatial]),
                                 pystac.TemporalExtent([[start, end]])))
        collection.add_items(items)
        catalog.add_child(collection)
    catalog.normalize_hrefs(str(store))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return store / "catalog.json"
