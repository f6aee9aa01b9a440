"""``cacaomap store build`` and ``cacaomap plots check``: the region's store, plot verdicts.

Typed functions that :mod:`training.cli` turns into subcommands. A user error (an
unreadable region or plots file, a store that is not one, imagery that cannot be
loaded) ends the command with one line naming it and a non-zero exit, never a
traceback; nothing is written then.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from shapely.geometry.base import BaseGeometry


def store_build(
    *,
    region: Path,
    reference_period: str,
    current_period: str,
    out: Path,
    stac: Path | None = None,
    safe: Path | None = None,
    search: str | None = None,
    collection: str = "sentinel-2-l2a",
    max_cloud: float | None = None,
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
) -> None:
    """Build (or resume) a region's baseline store: composites and class maps per cell.

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
        stac: A STAC catalogue, ItemCollection or item JSON on disk.
        safe: A folder of SAFE L2A products.
        search: A STAC API URL (searched over the region's bounds, per period).
        collection: Collection searched.
        max_cloud: Search only items under this eo:cloud_cover.
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
    """
    from serving.baseline.change import Thresholds
    from serving.baseline.zones import ZoneError
    from serving.imagery.sources import (
        ImageryError,
        in_period,
        items_from_file,
        items_from_safe,
        search_items,
    )
    from serving.inference.contract import ContractError
    from serving.inference.model_store import resolve_model_dir
    from serving.plots.build import BuildOptions, build_store
    from serving.plots.grid import GridError

    if sum(x is not None for x in (stac, safe, search)) != 1:
        raise SystemExit("store build: give exactly one of --stac, --safe or --search")
    try:
        shape = _region(region)
        model_dir = resolve_model_dir(model)
        if stac is not None:
            items = items_from_file(stac)
        elif safe is not None:
            products = sorted(p for p in safe.iterdir() if p.suffix.upper() == ".SAFE")
            if not products:
                raise ImageryError(f"no SAFE product in {safe}")
            items = items_from_safe(products)
        else:
            items = [i for period in (reference_period, current_period) for i in
                     search_items(str(search), list(shape.bounds), period, collection,
                                  max_cloud)]
        for name, period in (("reference", reference_period), ("current", current_period)):
            if not in_period(items, period):
                raise ImageryError(f"no acquisition in the {name} period {period}")
        options = BuildOptions(
            cell_size_m=cell_size_m, resolution=resolution, mask=mask, method=method,
            cloud_buffer=cloud_buffer, snow_is_clear=snow_is_clear, chunk=chunk,
            min_items=min_items, min_forest_ha=min_forest_ha, cutoff=cutoff,
            thresholds=Thresholds(min_loss_ha, min_loss_fraction, min_valid_fraction))
        with Progress() as bar:
            task = bar.add_task("store: cells x periods", total=None)
            report = build_store(
                out, shape, {"reference": reference_period, "current": current_period},
                items, model_dir, options, workers=workers, scheduler=scheduler,
                on_task=lambda done, total: bar.update(task, completed=done, total=total))
    except (ImageryError, GridError, ZoneError, ContractError, FileNotFoundError,
            ValueError) as err:
        raise SystemExit(f"store build: {err}") from err
    print(f"store {out}: {len(report.done)} cell-periods built, {len(report.skipped)} "
          f"already done, {len(report.empty)} without imagery, {len(report.failed)} failed")
    for label, why in report.failed.items():
        print(f"  FAILED {label}: {why}")
    if report.failed:
        raise SystemExit(1)


def _region(path: Path) -> BaseGeometry:
    """The region file as one lon/lat geometry."""
    import shapely

    from serving.baseline.zones import ZoneError, read_zones

    if not path.is_file():
        raise ZoneError(f"no region file at {path}")
    zones = read_zones(path)
    return shapely.union_all(zones.to_crs(4326).geometry.values)


def plots_check(
    plots: Path,
    *,
    store: Path | None = None,
    reference: Path | None = None,
    current: Path | None = None,
    out: Path = Path("plots-report"),
    evidence: bool = False,
    point_area_ha: float = 1.0,
    min_forest_ha: float | None = None,
    min_confidence: float = 0.5,
    min_loss_ha: float | None = None,
    min_loss_fraction: float | None = None,
    min_valid_fraction: float | None = None,
    classes: Path | None = None,
    workers: int = 2,
) -> None:
    """Check farm plots (EUDR GeoJSON: points with Area, polygons) against a store.

    Only the windows each plot touches are read. Writes ``plots.geojson`` (the input
    with a ``cacaomap`` record in each feature's properties), ``plots.csv``,
    ``plots.json`` (with lineage) and, with ``--evidence``, one PNG per plot.

    Args:
        plots: The plots GeoJSON (up to 10,000 features).
        store: A baseline store (``cacaomap store build``).
        reference: Or a class map at the reference date ...
        current: ... and one at the current date (confidence COGs beside are read).
        out: Report folder.
        evidence: Also write ``evidence/<plot>.png`` for each plot.
        point_area_ha: Area checked around a point without ``Area``.
        min_forest_ha: Smallest forest patch (default: the store's, else 0.5 ha).
        min_confidence: Detections with a lower mean loss confidence -> needs_review.
        min_loss_ha: Loss under this is map noise (default: the store's, else 0.1).
        min_loss_fraction: ... and under this share (default: the store's, else 0.01).
        min_valid_fraction: Less observed -> insufficient_data (default: store's, 0.8).
        classes: Class schema of the maps (pair of maps only; default the packaged one).
        workers: Chunks of plots measured at once.
    """
    from serving.baseline.change import Thresholds
    from serving.classes import load_classes
    from serving.files import write_bytes_atomic
    from serving.plots.check import CheckOptions, run_checks
    from serving.plots.evidence import evidence_png
    from serving.plots.geolocation import PlotsError
    from serving.plots.output import write_outputs
    from serving.plots.store import StoreError, open_store, pair_of_maps

    if (store is None) == (reference is None or current is None):
        raise SystemExit("plots check: give --store, or both --reference and --current")
    try:
        if not plots.is_file():
            raise PlotsError(f"no plots file at {plots}")
        source = (open_store(store) if store is not None else
                  pair_of_maps(reference, current, load_classes(classes)))  # type: ignore[arg-type]
    except (PlotsError, StoreError, OSError, ValueError) as err:
        raise SystemExit(f"plots check: {err}") from err
    meta = source.meta
    kept = meta.get("thresholds") or {}
    thresholds = Thresholds(
        min_loss_ha if min_loss_ha is not None else kept.get("min_loss_ha", 0.1),
        min_loss_fraction if min_loss_fraction is not None else kept.get(
            "min_loss_fraction", 0.01),
        min_valid_fraction if min_valid_fraction is not None else kept.get(
            "min_valid_fraction", 0.8))
    options = CheckOptions(thresholds, min_forest_ha if min_forest_ha is not None else
                           float(meta.get("min_forest_ha", 0.5)), min_confidence,
                           workers=workers)
    with Progress(transient=True) as bar:
        task = bar.add_task("checking plots", total=None)
        try:
            checked, records, summary = run_checks(
                plots.read_bytes(), source, options, name=plots.name,
                point_area_ha=point_area_ha,
                on_progress=lambda d, t: bar.update(task, completed=d, total=t))
        except PlotsError as err:
            raise SystemExit(f"plots check: {err}") from err
        written = write_outputs(out, checked, records, summary)
        if evidence:
            for plot, record in zip(checked, records, strict=True):
                if plot.geometry is not None and record["verdict"] != "error":
                    path = out / "evidence" / f"{_safe_name(plot.plot_id)}.png"
                    write_bytes_atomic(path, evidence_png(plot, record, source))
                    record["evidence"] = str(path)
            written = write_outputs(out, checked, records, summary)
    _print_verdicts(records, summary)
    Console().print("wrote " + ", ".join(str(p) for p in written)
                    + (f", {out / 'evidence'}/" if evidence else ""))


def _safe_name(plot_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in plot_id)[:80]


def _print_verdicts(records: list[dict[str, object]], summary: dict[str, object]) -> None:
    console = Console()
    table = Table(title="Plots (first 20)")
    for col in ("plot", "verdict", "forest ha", "lost ha", "observed", "flags"):
        table.add_column(col)
    for r in records[:20]:
        table.add_row(str(r["plot_id"]), str(r["verdict"]),
                      f"{r.get('forest_ref_ha', 0) or 0:.2f}",
                      f"{r.get('forest_loss_ha', 0) or 0:.2f}",
                      f"{r['valid_fraction']:.0%}" if "valid_fraction" in r else "",
                      ", ".join(r.get("flags") or []) or str(r.get("error") or ""))  # type: ignore[arg-type]
    console.print(table)
    console.print(f"verdicts: {json.dumps(summary['verdicts'])}")
