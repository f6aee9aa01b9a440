"""A store rebuilt while it is served: one consistent version per reader, no restart.

Before, a rebuild replaced each cell's files in place, one at a time, while the
service (which read ``store.json`` once, at start) went on answering: verdicts from a
mix of two models, under the lineage of the old one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from shapely.geometry import shape

from serving.http.local_server import served_model
from serving.imagery.sources import items_from_file
from serving.plots.check import CheckOptions, run_checks
from serving.store.build import BuildOptions, build_store
from serving.store.reader import STORE_FILE, open_store
from tests.model_factory import write_local_model
from tests.store_fixtures import CELL_SIZE_M, PERIODS

pytestmark = [pytest.mark.slow, pytest.mark.server]


def _build(store: Path, region_data: Path, model: Path) -> None:
    region = shape(json.loads((region_data / "region.geojson").read_text())["features"][0][
        "geometry"])
    report = build_store(store, region, PERIODS,
                         items_from_file(region_data / "stac" / "catalog.json"), model,
                         BuildOptions(cell_size_m=CELL_SIZE_M * 2))
    assert not report.failed


def test_a_rebuild_while_served_switches_whole_versions(
        region_data: Path, tmp_path: Path) -> None:
    first = write_local_model(tmp_path / "a" / "v1", mean=1500.0)
    second = write_local_model(tmp_path / "b" / "v1", mean=900.0)  # another model
    store = tmp_path / "store"
    _build(store, region_data, first)
    body = (region_data / "plots_eudr.geojson").read_bytes()
    before = open_store(store)  # a reader of the first version, as a request in flight
    records_before = run_checks(body, before, CheckOptions())[1]
    with served_model(first, log_path=tmp_path / "serve.log",
                      extra_env={"CACAOMAP_STORE": str(store)}) as url:
        v1 = httpx.post(f"{url}/store", json={}, timeout=60).json()
        _build(store, region_data, second)  # the rebuild, while the service runs
        v2 = httpx.post(f"{url}/store", json={}, timeout=60).json()
        plots = httpx.post(f"{url}/plots", content=body, timeout=300,
                           headers={"content-type": "application/geo+json"}).json()
    # the service answers from the new version, without a restart, and says so
    assert v1["version"] != v2["version"]
    assert v1["model"]["onnx_sha256"] != v2["model"]["onnx_sha256"]
    assert plots["lineage"]["store"]["version"] == v2["version"]
    assert plots["lineage"]["store"]["model"]["onnx_sha256"] == v2["model"]["onnx_sha256"]
    # a reader of the first version still reads the first version's files, whole
    assert run_checks(body, before, CheckOptions())[1] == records_before
    # the previous version is kept for such readers; older ones go at the next build
    meta = json.loads((store / STORE_FILE).read_text())
    folders = {p.name for p in store.glob("cells/*/*/*") if p.is_dir()}
    assert {c["versions"]["current"] for c in meta["cells"]} <= folders
    assert len(folders) > len({k for c in meta["cells"] for k in c["versions"].values()})
    _build(store, region_data, second)  # the same again: nothing to redo, v1 pruned
    kept = {p.name for p in store.glob("cells/*/*/*") if p.is_dir()}
    assert kept == {k for c in meta["cells"] for k in c["versions"].values()}
    shutil.rmtree(store)
