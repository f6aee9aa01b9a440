"""Building a store: cells, COGs with confidence, the catalogue, and resuming a killed build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from serving.inference.confidence import CONFIDENCE_NODATA, CONFIDENCE_SCALE
from serving.plots.check import CheckOptions, run_checks
from serving.store.reader import STORE_FILE, cell_dir, open_store
from tests.store_fixtures import CELL_SIZE_M, PERIODS

pytestmark = pytest.mark.slow


def test_every_cell_has_a_class_map_and_its_confidence_on_one_grid(built_store: Path
                                                                   ) -> None:
    meta = json.loads((built_store / STORE_FILE).read_text())
    assert len(meta["cells"]) >= 4  # the 2.56 km landscape over 1.28 km cells
    for cell in meta["cells"]:
        for period in PERIODS:
            folder = cell_dir(built_store, cell["id"], period, cell["versions"][period])
            with rasterio.open(folder / "classes.tif") as classes, \
                    rasterio.open(folder / "confidence.tif") as confidence, \
                    rasterio.open(folder / "composite.tif") as composite:
                assert (classes.crs, classes.transform, classes.shape) == (
                    confidence.crs, confidence.transform, confidence.shape)
                assert classes.transform == composite.transform
                assert classes.crs.to_string() == cell["crs"]
                codes, conf = classes.read(1), confidence.read(1)
            assert ((codes == 0) == (conf == CONFIDENCE_NODATA)).all()
            given = conf[codes != 0]
            # The top of 5 class probabilities is at least a fifth.
            assert given.min() >= CONFIDENCE_SCALE // 5 and given.max() <= CONFIDENCE_SCALE
    assert meta["reference_ends_by_cutoff"] is True
    assert meta["landscape"]["forest_ref_ha"] >= 0


def test_the_catalogue_lists_each_cell_and_period(built_store: Path) -> None:
    catalog = pystac.Catalog.from_file(str(built_store / "catalog.json"))
    items = list(catalog.get_items(recursive=True))
    meta = json.loads((built_store / STORE_FILE).read_text())
    assert len(items) == 2 * len(meta["cells"])
    item = items[0]
    assert set(item.assets) == {"composite", "classes", "confidence"}
    assert Path(item.assets["classes"].get_absolute_href() or "").is_file()
    assert item.properties["cacaomap:items"]  # the acquisitions composited


def test_plots_are_checked_with_the_confidence_classification_wrote(
        built_store: Path, region_data: Path) -> None:
    source = open_store(built_store)
    _, records, summary = run_checks((region_data / "plots_eudr.geojson").read_bytes(),
                                     source, CheckOptions())
    checked = [r for r in records if r["verdict"] != "error"]
    assert len(checked) == len(records)
    assert any(len(r["cells"]) > 1 for r in records)  # plots straddling cells
    for r in checked:
        assert r["forest_confidence"] is None or 0.2 <= r["forest_confidence"] <= 1
        if r["valid_fraction"] > 0:  # a transition is right with both dates: >= 0.2^2
            assert 0.04 <= r["map_confidence"] <= 1
    assert summary["lineage"]["reference_ends_by_cutoff"] is True
    assert summary["lineage"]["store"]["model"]["name"] == "local-test"


def test_a_build_killed_midway_resumes_and_redoes_nothing_done(
        region_data: Path, store_model: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    command = [sys.executable, "-m", "cacaomap", "store", "build",
               "--region", str(region_data / "region.geojson"),
               "--reference-period", PERIODS["reference"],
               "--current-period", PERIODS["current"],
               "--stac", str(region_data / "stac" / "catalog.json"),
               "--model", str(store_model), "--out", str(store),
               "--cell-size-m", str(CELL_SIZE_M / 2), "--workers", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not len(list(store.glob("cells/*/*/*/done.json"))) >= 2:
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (store / STORE_FILE).exists()  # unfinished: no store to read
    done_before = {p.parent: p.stat().st_mtime_ns for p in store.glob("cells/*/*/*/done.json")}
    for folder in done_before:  # what is marked done is whole
        assert all((folder / f).is_file() for f in ("composite.tif", "classes.tif",
                                                    "confidence.tif"))
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(done_before)} already done" in resumed.stdout
    for folder, mtime in done_before.items():
        assert (folder / "done.json").stat().st_mtime_ns == mtime  # not redone
    meta = json.loads((store / STORE_FILE).read_text())
    assert len(list(store.glob("cells/*/*/*/done.json"))) == 2 * len(meta["cells"])
    assert not list(store.glob("cells/*/*/*/.*"))  # no temporary leftovers


def test_a_cell_whose_imagery_fails_is_reported_and_the_rest_built(
        region_data: Path, store_model: Path, tmp_path: Path) -> None:
    from shapely.geometry import shape

    from serving.imagery.sources import items_from_file
    from serving.store.build import BuildOptions, build_store

    items = items_from_file(region_data / "stac" / "catalog.json")
    broken = [i for i in items if i.datetime and i.datetime.year == 2024]
    broken[0].assets["B04"].href = str(tmp_path / "missing.tif")  # one date unreadable
    region = shape(json.loads((region_data / "region.geojson").read_text())["features"][0][
        "geometry"])
    report = build_store(tmp_path / "store", region, PERIODS, items, store_model,
                         BuildOptions(cell_size_m=CELL_SIZE_M, min_items=3))
    assert report.failed and all("current" in k for k in report.failed)
    assert all("readable" in why for why in report.failed.values())
    assert len(report.done) == len(report.failed)  # every reference cell was built
    meta = json.loads((tmp_path / "store" / STORE_FILE).read_text())
    assert all(c.get("failed") for c in meta["cells"])
    record = run_checks((region_data / "plots_eudr.geojson").read_bytes(),
                        open_store(tmp_path / "store"), CheckOptions())[1][0]
    assert record["verdict"] == "error" and "failed to build" in record["error"]
    assert np.isfinite(meta["landscape"]["nodata_ha"])


def test_a_build_on_a_dask_cluster_writes_the_same_maps(built_store: Path, region_data: Path,
                                                        store_model: Path, tmp_path: Path
                                                        ) -> None:
    from distributed import LocalCluster
    from shapely.geometry import shape

    from serving.imagery.sources import items_from_file
    from serving.store.build import BuildOptions, build_store

    region = shape(json.loads((region_data / "region.geojson").read_text())["features"][0][
        "geometry"])
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        report = build_store(tmp_path / "store", region, PERIODS,
                             items_from_file(region_data / "stac" / "catalog.json"),
                             store_model, BuildOptions(cell_size_m=CELL_SIZE_M),
                             scheduler=cluster.scheduler_address)
    assert not report.failed and report.done
    compared = list(built_store.glob("cells/*/*/*/classes.tif"))
    assert len(compared) >= 8  # every cell and period (the same content keys: same folders)
    for local in compared:
        remote = tmp_path / "store" / local.relative_to(built_store)
        with rasterio.open(local) as a, rasterio.open(remote) as b:
            assert np.array_equal(a.read(), b.read()), local


def test_a_second_build_into_one_store_is_refused_while_the_first_runs(
        region_data: Path, store_model: Path, tmp_path: Path) -> None:
    """Before, two builds deleted each other's temporary files; the last store.json won."""
    from serving.store.build import build_lock

    store = tmp_path / "store"
    command = [sys.executable, "-m", "cacaomap", "store", "build",
               "--region", str(region_data / "region.geojson"),
               "--reference-period", PERIODS["reference"],
               "--current-period", PERIODS["current"],
               "--stac", str(region_data / "stac" / "catalog.json"),
               "--model", str(store_model), "--out", str(store)]
    with build_lock(store):  # a first build holds the store
        second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("cacaomap store build: another build of the store")
    assert f"pid {os.getpid()}" in line
    assert not (store / STORE_FILE).exists() and not (store / "cells").exists()
