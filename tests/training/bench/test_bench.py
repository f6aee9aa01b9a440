"""``make bench``'s parts on small inputs: they must keep working between benchmark runs.

The benchmark itself takes ~30 minutes on the full Sentinel-2 size; here each part runs
for real on a small scene and a small model (a real child process, a real
``bentoml serve``), and the performance page is regenerated from the committed JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from serving.inference.blending import window_starts
from tests.model_factory import write_local_model
from tests.service_helpers import REPO
from training.bench.runner import END, PERFORMANCE_PAGE, START, summarise, update_performance_page
from training.bench.service import (
    batch_sizes_from_metrics,
    build_scene,
    classify_scene_child,
    service_throughput,
    tiles_while_scene,
)

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("bench") / "v1", tile_size=64,
                             overlap=16)


def test_scene_child_reports_time_and_its_own_peak_memory(
    model_dir: Path, landscape: Path, tmp_path: Path
) -> None:
    source = landscape / "images" / "s2l2a_20240820.tif"
    scene = build_scene(source, tmp_path / "scene.tif", 300)
    with rasterio.open(scene) as src, rasterio.open(source) as orig:
        assert (src.width, src.height) == (300, 300)
        # The source repeated: its first rows and columns, then again.
        w = orig.width
        assert np.array_equal(src.read(1, window=((0, 8), (w, w + 8))),
                              orig.read(1, window=((0, 8), (0, 8))))
    record = classify_scene_child(model_dir, scene, tmp_path / "out.tif")
    assert record["width"] == record["height"] == 300
    assert record["windows"] == len(window_starts(300, 64, 48)) ** 2 == 36
    assert record["seconds"] > 0 and record["mpx_per_s"] > 0
    # The child's own VmHWM: a Python with numpy, ORT and GDAL, not this test process.
    assert 50 < record["peak_rss_mb"] < 2048
    assert not (tmp_path / "out.tif").exists()


def test_service_sweep_counts_statuses_and_batches(model_dir: Path, tmp_path: Path
                                                   ) -> None:
    tile = np.random.default_rng(0).integers(100, 4000, (10, 64, 64)).astype(np.uint16)
    rows = service_throughput(model_dir, tile, [1, 4], 1.5, tmp_path)
    assert [(r["batching"], r["payload"], r["clients"]) for r in rows] == [
        ("on", "lists", 1), ("on", "binary", 1), ("on", "binary", 4),
        ("off", "lists", 1), ("off", "binary", 1), ("off", "binary", 4)]
    for r in rows:
        assert set(r["statuses"]) == {200}, r
        assert r["requests_per_s"] > 0
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    on = [r for r in rows if r["batching"] == "on"]
    assert all(r["mean_batch_size"] >= 1 for r in on)


def test_client_bench_measures_each_client_form_with_the_same_codes(
        model_dir: Path, tmp_path: Path) -> None:
    from training.bench.client import client_bench

    tile = np.random.default_rng(0).integers(100, 4000, (10, 64, 64)).astype(np.uint16)
    rows = client_bench(model_dir, tile, 0.5, tmp_path)
    assert [r["form"] for r in rows] == ["httpx_binary", "bentoml_lists",
                                         "bentoml_binary", "cacaomap_client"]
    for r in rows:
        assert r["same_codes"] and r["requests"] >= 3 and r["requests_per_s"] > 0
        assert r["p50_ms"] <= r["p95_ms"]
    assert rows[0]["vs_httpx_binary"] == 1.0


def test_tta_cost_is_measured_for_each_mode_against_none(model_dir: Path) -> None:
    from training.bench.model import tta_cost

    rows = tta_cost(model_dir, batch=2, min_seconds=0.2)
    assert [(r["tta"], r["runs"]) for r in rows] == [("none", 1), ("flips", 4), ("d4", 8)]
    assert rows[0]["ratio"] == 1.0 and all(r["tiles_per_s"] > 0 for r in rows)
    assert rows[2]["ratio"] < rows[0]["ratio"]  # eight runs a tile cost more than one


def test_tile_latency_is_measured_idle_and_while_a_scene_runs(
    model_dir: Path, landscape: Path, tmp_path: Path
) -> None:
    scene = build_scene(landscape / "images" / "s2l2a_20240820.tif",
                        tmp_path / "scene.tif", 1024)
    tile = np.random.default_rng(0).integers(100, 4000, (10, 64, 64)).astype(np.uint16)
    r = tiles_while_scene(model_dir, tile, scene, 1.0, tmp_path)
    assert r["scene"]["status"] == 200 and r["scene_side"] == 1024
    for phase in ("idle", "during_scene"):
        assert set(r[phase]["statuses"]) == {200}, r
        assert 0 < r[phase]["p50_ms"] <= r[phase]["p99_ms"]
    assert r["p99_ratio"] == r["during_scene"]["p99_ms"] / r["idle"]["p99_ms"]


def test_batch_sizes_from_prometheus_text() -> None:
    text = ('bentoml_service_adaptive_batch_size_sum{endpoint="/classify_tiles",'
            'method_name="classify_tiles",service_name="cacaomap"} 30.0\n'
            'bentoml_service_adaptive_batch_size_count{endpoint="/classify_tiles",'
            'method_name="classify_tiles",service_name="cacaomap"} 12.0\n')
    assert batch_sizes_from_metrics(text) == {"batches": 12.0, "mean_batch_size": 2.5}
    assert batch_sizes_from_metrics("") == {}


def test_performance_page_is_generated_from_the_newest_json(tmp_path: Path) -> None:
    newest = sorted(p for p in (REPO / "experiments" / "benchmarks").glob("20*.json")
                    if "partial" not in p.name)[-1]
    result = json.loads(newest.read_text())
    summary = summarise(result)
    page = tmp_path / "performance.md"
    page.write_text(f"# x\n\n## Performance\n\n{START}\nold\n{END}\n\n## Next\n")
    update_performance_page(result, summary, page)
    text = page.read_text()
    section = text.split(START)[1].split(END)[0]
    assert "old" not in section and text.endswith("## Next\n")
    assert f"experiments/benchmarks/{result['date']}.json" in section
    assert f"{summary['scene_seconds_int8']:.0f} s" in section
    assert f"{summary['ort_int8_vs_eager']:.2f}x" in section
    # The committed performance page carries the newest figures.
    committed = (REPO / PERFORMANCE_PAGE).read_text().split(START)[1].split(END)[0]
    assert committed == section
    # A run with the TTA section (make bench from 2026-12-02) adds its line.
    result["tta"] = [{"tta": m, "runs": n, "tile": 256, "batch": 8, "tiles_per_s": 32 / n,
                      "ratio": 1 / n} for m, n in (("none", 1), ("flips", 4), ("d4", 8))]
    update_performance_page(result, summary, page)
    assert "tiles/s none / flips / d4 (÷ none) | 32.0 (1.00x) / 8.0 (0.25x) / 4.0 (0.12x)" \
        in page.read_text()


def test_plots_bench_checks_every_plot_on_both_stores_and_the_service(
        model_dir: Path, tmp_path: Path) -> None:
    from training.bench.plot_checks import plots_bench

    result = plots_bench(tmp_path / "plots", model_dir, count=40, side=600)
    for name in ("store_1x1", "store_2x2"):
        run = result[name]
        assert run["plots"] == 40 and sum(run["verdicts"].values()) == 40
        assert "error" not in run["verdicts"]  # every plot lies inside the store
        assert run["seconds"] > 0 and 50 < run["peak_rss_mb"] < 4096
    # The same pixels in one cell or four give the same verdicts.
    assert result["store_1x1"]["verdicts"] == result["store_2x2"]["verdicts"]
    # With three reference layers beside the store: every plot, and a time ratio.
    with_layers = result["store_1x1_references"]
    assert with_layers["plots"] == 40 and sum(with_layers["verdicts"].values()) == 40
    assert "error" not in with_layers["verdicts"]
    assert result["references_time_ratio"] > 0
    assert result["baseline_before"]["plots"] == 40
    assert result["service"]["status"] == 200
    assert result["service"]["verdicts"] == result["store_1x1"]["verdicts"]


def test_queues_bench_serves_both_trees_and_gives_ratios(model_dir: Path, tmp_path: Path
                                                         ) -> None:
    import subprocess

    from training.bench.queues import BEFORE, queues_before_after

    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{BEFORE}^{{commit}}"],
                      capture_output=True).returncode:
        pytest.skip(f"this clone does not hold {BEFORE} (a shallow clone)")
    tile = np.random.default_rng(0).integers(100, 4000, (10, 64, 64)).astype(np.uint16)
    result = queues_before_after(model_dir, tile, tmp_path, clients=2, seconds=1.0,
                                 plots=20, side=600, rounds=1)
    before, after = result["rounds"]["before"][0], result["rounds"]["after"][0]
    # Each tree is really the one served: only the newer store names its version.
    assert not before["store_version_reported"] and after["store_version_reported"]
    for run in (before, after):
        assert run["tiles_per_s"] > 0 and run["plots_per_s"] > 0
    assert result["tiles_ratio"] == after["tiles_per_s"] / before["tiles_per_s"]


def test_radar_composite_bench_measures_each_side(tmp_path: Path) -> None:
    from training.bench.radar_composite import radar_composite_bench

    result = radar_composite_bench(tmp_path, sides=(128, 256), count=3)
    for run in result["runs"].values():
        assert run["seconds"] > 0 and run["peak_rss_mb"] > 50
        assert run["radar_seen_fraction"] == 1.0
        assert run["same_bytes"] and run["seconds_threaded"] > 0  # threads change no byte
    assert result["rss_ratio_large_over_small"] > 0


def test_the_odc_stac_peer_composite_gives_the_same_bytes_as_ours(tmp_path: Path) -> None:
    from training.bench.radar_composite import composite_vs_peer

    result = composite_vs_peer(tmp_path, sides=(256,), count=3)
    assert result["256"]["max_abs_difference_dn"] == 0  # the same composite, two ways
    assert result["256"]["time_ratio"] > 0


def test_the_radar_statistics_ablation_scores_every_variant(tmp_path: Path) -> None:
    from training.bench.radar_statistics import FAMILIES, radar_statistics_bench

    result = radar_statistics_bench(tmp_path, side=192, seeds=(0,))
    summary = result["summary"]
    assert {f"without {f}" for f in FAMILIES} <= set(summary)
    assert summary["all statistics"]["iou"]["vs_all_mean"] == 0
    for row in summary.values():
        assert 0 < row["iou"]["macro_mean"] <= 1
    # radar alone tells the classes apart well above chance (five classes)
    assert summary["all statistics"]["iou"]["macro_mean"] > 0.4
    # the filter smooths speckle inside the forest; the real scene gains looks
    speckle = result["forest_interior_vh_mean_std_db"]
    assert speckle["lee"] < speckle["none"]
    enl = result["real"]["pyrosar_enl_uniform_windows"]
    assert enl["lee"] > enl["none"]
    assert set(result["real"]["rondonia_radar_only_accuracy"]) == {"none", "lee"}
