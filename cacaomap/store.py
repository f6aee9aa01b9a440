"""``cacaomap store build``: the region's baseline store, built once on dask."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rich.progress import Progress
from shapely.geometry.base import BaseGeometry

from cacaomap.grammar import CommandError
from cacaomap.sources import NO_RADAR, ImagerySource, RadarSource


def build(
    *,
    region: Path,
    reference_period: str,
    current_period: str,
    out: Path,
    source: ImagerySource,
    model: Path | None = None,
    cell_size_m: float = 10_240.0,
    resolution: float = 10.0,
    mask: Literal["scl", "csmask", "none"] = "scl",
    method: Literal["median", "best"] = "median",
    cloud_buffer: int = 2,
    snow_is_clear: bool = False,
    chunk: int = 512,
    min_items: int = 1,
    min_forest_ha: float = 0.5,
    min_loss_ha: float = 0.1,
    min_loss_fraction: float = 0.01,
    min_valid_fraction: float = 0.8,
    cutoff: str = "2020-12-31",
    workers: int = 2,
    scheduler: str | None = None,
    radar_source: RadarSource = NO_RADAR,
) -> None:
    r"""Build (or resume) a region's baseline store: composites and class maps per cell.

    The region is cut into cells of a fixed grid in each UTM zone it touches; per cell
    and period the clear observations are composited and classified (class map and
    per-pixel confidence, COGs), catalogued as STAC items. Each (cell, period) is a dask
    task; a rerun skips what is done (content hash), a failed cell is reported and the
    rest go on.

    Args:
        region: GeoJSON (or any vector file) of the region, any CRS.
        reference_period: ``START/END`` of the reference period (ending by the cutoff).
        current_period: ``START/END`` of the monitoring period.
        out: The store's folder.
        source: Where the acquisitions come from (a search covers the region's bounds).
        model: Model folder (default: the newest under models/cacaomap/).
        cell_size_m: Cell side in metres (whole pixels).
        resolution: Pixel size in metres.
        mask: Clear-sky source: ``scl``, ``csmask`` (cloud model) or ``none``.
        method: ``median`` of clear observations or ``best`` pixel.
        cloud_buffer: Pixels by which clouds and shadows are grown.
        snow_is_clear: Count SCL snow as clear.
        chunk: Dask block side of the composites.
        min_items: Fewest readable items per cell and period.
        min_forest_ha: Smallest forest patch at the reference date (FAO: 0.5 ha).
        min_loss_ha: Loss under this is map noise (recorded with the store).
        min_loss_fraction: ... and under this share of the plot.
        min_valid_fraction: Less observed than this (and no loss) -> insufficient_data.
        cutoff: The reference date plots are judged against (EUDR: 2020-12-31).
        workers: Tasks in flight on the local scheduler.
        scheduler: A dask.distributed scheduler address (``tcp://host:8786``).
        radar_source: Sentinel-1 of both periods, files (``--radar``) or a STAC API
            search (``--radar-search``, over the region per period), as for
            ``cacaomap imagery stack-radar``: each period's are stacked onto its
            composites, for a model trained on optical + radar bands.

    Writes:
        OUT/store.json (grid, periods, model sha256, thresholds, lineage), per cell and
        period a composite, a class map and its confidence (COGs) under OUT/cells/, and
        a STAC catalogue of them (OUT/catalog.json). Each cell-period is written whole
        or not at all; a rerun skips what is done.

    Examples:
        cacaomap store build --region region.geojson --stac catalog.json \
            --reference-period 2020-01-01/2020-12-31 \
            --current-period 2024-01-01/2024-12-31 --out store/
        cacaomap store build --region tocache.gpkg --safe products/ --mask csmask \
            --reference-period 2020-01-01/2020-12-31 \
            --current-period 2024-01-01/2024-12-31 --out store/ --workers 2
        cacaomap store build --region region.geojson --stac catalog.json \
            --radar s1/*.tif --reference-period 2020-01-01/2020-12-31 \
            --current-period 2024-01-01/2024-12-31 --out store-s1s2/
        cacaomap store build --region region.geojson --search $PC --sign planetary-computer \
            --radar-search $PC --radar-sign planetary-computer \
            --reference-period 2020-01-01/2020-12-31 \
            --current-period 2024-01-01/2024-12-31 --out store-s1s2/
    """
    from serving.baseline.change import Thresholds
    from serving.imagery.sources import ImageryError, in_period
    from serving.inference.model_store import resolve_model_dir
    from serving.store.build import BuildOptions, build_store

    if source.given() != 1:
        raise CommandError("give exactly one of --stac, --safe or --search")
    shape = _region(region)
    model_dir = resolve_model_dir(model)
    radar_files = radar_source.files([reference_period, current_period],
                                     list(shape.bounds), remote=source.remote)
    items = source.items([reference_period, current_period], list(shape.bounds))
    for name, period in (("reference", reference_period), ("current", current_period)):
        if not in_period(items, period):
            raise ImageryError(f"no acquisition in the {name} period {period}")
    options = BuildOptions(
        cell_size_m=cell_size_m, resolution=resolution, mask=mask, method=method,
        cloud_buffer=cloud_buffer, snow_is_clear=snow_is_clear, chunk=chunk,
        min_items=min_items, min_forest_ha=min_forest_ha, cutoff=cutoff,
        remote_assets=source.remote,
        thresholds=Thresholds(min_loss_ha, min_loss_fraction, min_valid_fraction))
    with Progress() as bar:
        task = bar.add_task("store: cells x periods", total=None)
        report = build_store(
            out, shape, {"reference": reference_period, "current": current_period},
            items, model_dir, options, workers=workers, scheduler=scheduler,
            on_task=lambda done, total: bar.update(task, completed=done, total=total),
            radar=radar_files)
    print(f"store {out}: {len(report.done)} cell-periods built, {len(report.skipped)} "
          f"already done, {len(report.empty)} without imagery, {len(report.failed)} failed")
    for label, why in report.failed.items():
        print(f"  FAILED {label}: {why}")
    if report.failed:
        raise CommandError(f"{len(report.failed)} cell-periods failed (listed above); "
                           "run the same command again to retry them")


def _region(path: Path) -> BaseGeometry:
    """The region file as one lon/lat geometry."""
    import shapely

    from serving.baseline.zones import ZoneError, read_zones

    if not path.is_file():
        raise ZoneError(f"no region file at {path}")
    zones = read_zones(path)
    return shapely.union_all(zones.to_crs(4326).geometry.values)
