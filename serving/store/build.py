"""Building a baseline store: per cell and period a composite, a class map, a confidence.

The region (lon/lat) is cut into cells (:func:`serving.store.grid.plan_cells`). Each
(cell, period) is one dask task: the period's items that touch the cell are loaded onto
the cell's grid (:mod:`serving.imagery.sources`), composited
(:mod:`serving.imagery.composite`), classified with the model into a class map and its
confidence (:func:`serving.inference.scene.classify_scene`), and marked done with its
content key last. The key is the sha256 of everything the files depend on (the cell,
the period, the items and their assets, the model's sha256, the imagery options), so a
rerun skips what is done, and redoes a cell whose inputs changed. A task that fails is
reported with its reason and the others go on; a build killed midway resumes where it
stopped. Tasks run on the local threaded scheduler (``workers`` in flight) or on a
``dask.distributed`` cluster (``scheduler``; the store and the imagery must be on paths
its workers can read).

Last, the store's STAC catalogue (pystac, self-contained, one collection per period),
its landscape summary (block by block) and ``store.json`` are written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from serving.bands import TRUE_COLOUR
from serving.baseline.change import Thresholds
from serving.baseline.forest_patches import DEFAULT_MIN_FOREST_HA
from serving.files import write_bytes_atomic
from serving.imagery.masks import CSMASK_BANDS
from serving.inference.contract import load_model_dir
from serving.radar.acquisitions import RadarFile
from serving.radar.statistics import RADAR_BANDS
from serving.store.grid import Cell, footprint_lonlat, plan_cells
from serving.store.reader import (
    PERIODS,
    STORE_FILE,
    STORE_VERSION,
    StoreError,
    cell_dir,
    source_from_meta,
)

#: Default cell side in metres (1024 px of 10 m).
DEFAULT_CELL_SIZE_M = 10_240.0
#: The EU deforestation regulation's cutoff date.
EUDR_CUTOFF = "2020-12-31"


@dataclass(frozen=True)
class BuildOptions:
    """How the store's composites and maps are made.

    Attributes:
        cell_size_m: Cell side in metres (whole pixels).
        resolution: Pixel size in metres.
        mask: Clear-sky source: ``scl``, ``csmask`` or ``none``.
        method: Composite method: ``median`` or ``best``.
        cloud_buffer: Pixels by which clouds and shadows are grown.
        snow_is_clear: Count SCL snow as clear.
        chunk: Dask block side of the composites.
        min_items: Fewest readable items a cell's period needs.
        min_forest_ha: Forest definition's minimum patch (the landscape summary).
        thresholds: Verdict thresholds recorded with the store.
        cutoff: The reference date the store answers for.
        remote_assets: Whether remote (``http(s)``, ``s3``) asset hrefs may be read (a
            STAC API search's items, or when asked for).
    """

    cell_size_m: float = DEFAULT_CELL_SIZE_M
    resolution: float = 10.0
    mask: str = "scl"
    method: str = "median"
    cloud_buffer: int = 2
    snow_is_clear: bool = False
    chunk: int = 512
    min_items: int = 1
    min_forest_ha: float = DEFAULT_MIN_FOREST_HA
    thresholds: Thresholds = field(default_factory=Thresholds)
    cutoff: str = EUDR_CUTOFF
    remote_assets: bool = False

    def imagery(self) -> dict[str, Any]:
        """The options the files depend on (part of each cell's content key)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("min_forest_ha", "thresholds", "cutoff", "cell_size_m",
                             "remote_assets")}


@dataclass
class BuildReport:
    """What a build did, per (cell, period)."""

    store: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def content_key(cell: Cell, period: str, items: list[dict[str, Any]], model_sha: str,
                options: BuildOptions, radar: Sequence[RadarFile] = ()) -> str:
    """sha256 of everything a cell's files for one period depend on."""
    assets = sorted((i["id"], sorted((k, a.get("href", "")) for k, a in
                                     i.get("assets", {}).items())) for i in items)
    content = {"cell": cell.to_dict(), "period": period, "items": assets,
               "model": model_sha, "options": options.imagery()}
    if radar:
        # the filter joins the key only when there is one: stores built before it keep
        # their keys (and are not rebuilt)
        content["radar"] = sorted(
            (f.name, f.units) + (() if f.speckle.filter == "none"
                                 else (f.speckle.describe(),)) for f in radar)
    blob = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def build_cell(store: str, cell_record: dict[str, Any], name: str, period: str,
               items: list[dict[str, Any]], model_dir: str, options: BuildOptions,
               radar: Sequence[RadarFile] = (),
               ) -> tuple[str, str, str, str, str]:
    """One task: a cell's composite, class map and confidence for one period.

    With ``radar`` acquisitions of the period, or a model that reads radar bands, the
    composite is the optical one with the radar statistics stacked on it
    (:func:`serving.radar.stack.stack_radar`).

    Returns:
        (cell id, period name, status, detail, folder key); status is ``done``,
        ``skipped``, ``empty`` (no imagery over the cell) or ``failed`` (detail says
        why). The files go to the content key's own folder, never over another's.
    """
    import dask
    import pystac
    import rasterio

    from serving.imagery.composite import write_composite
    from serving.imagery.sources import Grid, load_items
    from serving.inference.many_scenes import cached_classifier
    from serving.inference.scene import classify_scene
    from serving.radar.sensors_map import write_sensors_map
    from serving.radar.stack import stack_radar

    cell = Cell.from_dict(cell_record)
    classifier = cached_classifier(model_dir)
    key = content_key(cell, period, items, classifier.contract.onnx_sha256, options, radar)
    folder = cell_dir(Path(store), cell.id, name, key)
    short = folder.name
    marker = folder / "done.json"
    try:
        if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
            return cell.id, name, "skipped", "", short
        folder.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(folder)
        record: dict[str, Any] = {"key": key, "cell": cell.id, "period": period,
                                  "items": [i["id"] for i in items]}
        if not items:
            record["status"] = "empty"
            write_bytes_atomic(marker, json.dumps(record, indent=1).encode())
            return (cell.id, name, "empty", "no acquisition of the period covers the cell",
                    short)
        loaded = load_items([pystac.Item.from_dict(i) for i in items],
                            optical_bands(classifier.contract.bands, options.mask),
                            mask=options.mask,  # type: ignore[arg-type]
                            grid=Grid(cell.utm.crs, cell.resolution, cell.bounds),
                            chunk=options.chunk, snow_is_clear=options.snow_is_clear,
                            min_items=options.min_items, cloud_buffer=options.cloud_buffer,
                            remote=options.remote_assets)
        with_radar = bool(radar) or any(b in RADAR_BANDS for b in classifier.contract.bands)
        optical = folder / (".optical.tif" if with_radar else "composite.tif")
        with dask.config.set(scheduler="synchronous"):  # the cells are the parallelism
            result = write_composite(loaded, optical,
                                     method=options.method, period=period)  # type: ignore[arg-type]
        if with_radar:
            stacked = stack_radar(optical, radar, folder / "composite.tif", period=period)
            optical.unlink()
            record |= {"radar_items": stacked.radar_items,
                       "radar_seen_fraction": stacked.radar_seen_fraction,
                       "radar_only_fraction": stacked.radar_only_fraction,
                       "radar_notes": stacked.notes}
        with rasterio.open(folder / "composite.tif") as src:
            classify_scene(src, folder / "classes.tif", classifier,
                           confidence=folder / "confidence.tif")
        if with_radar:
            record["sensors"] = write_sensors_map(folder / "composite.tif",
                                                  folder / "classes.tif",
                                                  folder / "sensors.tif")
        record |= {"status": "done", "used": result.items, "skipped": result.skipped,
                   "clear_fraction": result.clear_fraction,
                   "never_clear_fraction": result.never_clear_fraction,
                   "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        write_bytes_atomic(marker, json.dumps(record, indent=1).encode())
    except Exception as err:  # one cell's failure must not stop the region
        return cell.id, name, "failed", f"{type(err).__name__}: {err}", short
    return cell.id, name, "done", "", short


def optical_bands(model_bands: Sequence[str], mask: str) -> list[str]:
    """The optical bands a cell's composite holds: the model's optical bands.

    A radar-only model reads no optical band, yet the store keeps the optical
    composite as evidence (its clear count says what optical saw; its true colour is
    the plot's picture): then the true-colour bands, and those the cloud model needs
    with ``mask=csmask``.
    """
    wanted = [b for b in model_bands if b not in RADAR_BANDS]
    if wanted:
        return wanted
    return list(CSMASK_BANDS) if mask == "csmask" else sorted(TRUE_COLOUR)


def _remove_leftovers(folder: Path) -> None:
    """Remove the hidden temporary files a killed task left (they are never read)."""
    import shutil

    for stale in folder.glob(".*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def build_store(
    out: str | Path, region: BaseGeometry, periods: dict[str, str],
    items: list[Any], model_dir: str | Path, options: BuildOptions | None = None, *,
    workers: int = 2, scheduler: str | None = None,
    on_task: Callable[[int, int], None] | None = None,
    radar: Sequence[RadarFile] = (),
) -> BuildReport:
    """Build (or resume) a store of the region for the reference and current periods.

    Args:
        out: The store's folder.
        region: The region in longitude/latitude.
        periods: ``{"reference": "START/END", "current": "START/END"}``.
        items: STAC items (pystac) of both periods; each period takes those in it.
        model_dir: The model that classifies the composites.
        options: Cells and imagery options.
        workers: Tasks in flight on the local scheduler.
        scheduler: A ``dask.distributed`` scheduler address instead.
        on_task: Called with (tasks finished, tasks in all).
        radar: Sentinel-1 acquisitions (:func:`serving.radar.acquisitions.describe`) of
            both periods; each period stacks those dated in it onto its composites.
    """
    options = options or BuildOptions()
    out = Path(out)
    if set(periods) != set(PERIODS):
        raise ValueError(f"periods must be {PERIODS}; got {sorted(periods)}")
    onnx_path, contract = load_model_dir(model_dir)
    with build_lock(out):
        return _build(out, region, periods, items, model_dir, options, workers, scheduler,
                      on_task, onnx_path, contract, radar)


#: The lock file a build holds in the store's folder (one build of a store at a time).
BUILD_LOCK = ".build.lock"


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold the store's build lock, or refuse.

    Two builds into one store at once would delete each other's temporary files, and
    the last ``store.json`` would win. The lock is the operating system's (``flock``):
    it goes with the process holding it, so a killed build never leaves it locked.

    Raises:
        StoreError: Naming the build that holds it.
    """
    import fcntl
    import os

    out.mkdir(parents=True, exist_ok=True)
    with open(out / BUILD_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StoreError(f"another build of the store {out} is running ({holder}): wait "
                             "for it to end, or build into another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since "
                     f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(out: Path, region: BaseGeometry, periods: dict[str, str], items: list[Any],
           model_dir: str | Path, options: BuildOptions, workers: int,
           scheduler: str | None, on_task: Callable[[int, int], None] | None,
           onnx_path: Path, contract: Any, radar: Sequence[RadarFile] = ()) -> BuildReport:
    """The build itself, under the store's lock."""
    import dask

    from serving.imagery.sources import in_period

    cells = plan_cells(region, options.cell_size_m, options.resolution)
    report = BuildReport(out)
    tasks = []
    for name in PERIODS:
        period_items = in_period(items, periods[name])
        start, end = periods[name].split("/")
        period_radar = [f for f in radar if f.date is None or start <= f.date <= end]
        footprints = [(i, shapely.geometry.shape(i.geometry) if i.geometry else box(*i.bbox))
                      for i in period_items]
        for cell in cells:
            here = footprint_lonlat(cell)
            mine = [i.to_dict() for i, f in footprints if f.intersects(here)]
            tasks.append(dask.delayed(build_cell, pure=False)(
                str(out), cell.to_dict(), name, periods[name], mine, str(model_dir),
                options, period_radar))
    outcomes = _run(tasks, workers, scheduler, on_task)
    failed: dict[str, dict[str, str]] = {}
    versions: dict[str, dict[str, str]] = {}
    for cell_id, name, status, detail, short in outcomes:
        label = f"{cell_id}/{name}"
        if status == "failed":
            report.failed[label] = detail
            failed.setdefault(cell_id, {})[name] = detail
        else:
            versions.setdefault(cell_id, {})[name] = short
            {"done": report.done, "skipped": report.skipped, "empty": report.empty}[
                status].append(label)
    meta = {
        "cacaomap_store": STORE_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "region": mapping(region),
        "periods": periods,
        "cutoff": options.cutoff,
        "reference_ends_by_cutoff": periods["reference"].split("/")[-1] <= options.cutoff,
        "model": {"name": contract.name, "version": contract.version,
                  "onnx_sha256": contract.onnx_sha256,
                  "mlflow_run_id": contract.mlflow_run_id, "path": str(onnx_path.parent)},
        "classes": contract.schema.to_dict(),
        "thresholds": asdict(options.thresholds),
        "min_forest_ha": options.min_forest_ha,
        "grid": {"resolution": options.resolution, "cell_size_m": options.cell_size_m,
                 "kind": "UTM zone grid"},
        "options": options.imagery(),
        "radar": {"acquisitions": len(radar),
                  "speckle_filter": sorted({f.speckle.describe() for f in radar}),
                  "units_read": sorted({f.units for f in radar})} if radar else None,
        "cells": [cell.to_dict() | {"versions": versions.get(cell.id, {})}
                  | ({"failed": failed[cell.id]} if cell.id in failed else {})
                  for cell in cells],
    }
    from serving.store.catalog import write_catalog
    from serving.store.landscape import store_landscape

    write_catalog(out, meta, cells)
    source = source_from_meta(out, meta)
    meta["landscape"] = store_landscape(source, region, options.min_forest_ha)
    previous = _read_meta(out)
    write_bytes_atomic(out / STORE_FILE, json.dumps(meta, indent=1).encode())  # the switch
    _prune(out, [meta, previous])
    return report


def _read_meta(out: Path) -> dict[str, Any] | None:
    """The store's description now (None: none yet, or unreadable)."""
    try:
        return dict(json.loads((out / STORE_FILE).read_text()))
    except (OSError, ValueError):
        return None


def _prune(out: Path, keep: list[dict[str, Any] | None]) -> None:
    """Remove the cells' version folders neither the new nor the previous version uses.

    A service may still answer from the previous ``store.json`` while it notices the new
    one, so that version's folders stay until the next build.
    """
    import re
    import shutil

    used = {(c["id"], period, key) for meta in keep if meta
            for c in meta.get("cells", []) for period, key in (c.get("versions") or {}).items()}
    for folder in out.glob("cells/*/*/*"):
        if folder.is_dir() and re.fullmatch(r"[0-9a-f]{16}", folder.name) and (
                folder.parent.parent.name, folder.parent.name, folder.name) not in used:
            shutil.rmtree(folder, ignore_errors=True)


def _run(tasks: list[Any], workers: int, scheduler: str | None,
         on_task: Callable[[int, int], None] | None) -> list[tuple[str, str, str, str, str]]:
    """Compute the tasks locally or on a cluster, reporting each as it finishes."""
    import dask

    outcomes: list[tuple[str, str, str, str, str]] = []
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler) as client:
            for future in as_completed(client.compute(tasks)):
                outcomes.append(future.result())
                if on_task:
                    on_task(len(outcomes), len(tasks))
        return outcomes
    from dask.callbacks import Callback

    finished = [0]

    class Progress(Callback):  # type: ignore[misc]
        """Counts the cell tasks as the threaded scheduler finishes them."""

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            if isinstance(result, tuple) and len(result) == 4:
                finished[0] += 1
                if on_task:
                    on_task(finished[0], len(tasks))

    with Progress():
        outcomes = list(dask.compute(*tasks, scheduler="threads",
                                     num_workers=max(1, workers)))
    return outcomes
