"""``make bench``: measure the model, a full Sentinel-2 tile and the service, in one run.

Writes ``experiments/benchmarks/<date>.json``, prints the tables, and regenerates the
performance page's measured section (``docs/performance.md``) from that JSON. Uses the
newest demo run (``make demo``)
and its exported model; builds the int8 variant (:mod:`training.export.quantize`) when absent.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import rasterio
import torch
from rasterio.features import geometry_mask
from rich.console import Console
from rich.table import Table

from serving.inference.contract import load_model_dir
from serving.inference.model_store import newest_version
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier
from training.bench.client import client_bench
from training.bench.composite import composite_bench
from training.bench.model import (
    cpu_facts,
    gflop_per_tile,
    matmul_gflops,
    model_throughput,
    session_options,
    theoretical_peak,
    tta_cost,
)
from training.bench.plot_checks import plots_bench
from training.bench.queues import queues_before_after
from training.bench.radar_composite import composite_vs_peer, radar_composite_bench
from training.bench.radar_statistics import radar_statistics_bench
from training.bench.service import (
    SENTINEL2_TILE,
    build_scene,
    classify_scene_child,
    service_throughput,
    tiles_while_scene,
)
from training.demo import latest_run
from training.export.exporter import load_checkpoint, real_tiles
from training.export.quantize import quantize_int8
from training.export.registry import checkpoint_from_run

#: The docs page whose measured section ``make bench`` rewrites.
PERFORMANCE_PAGE = Path("docs/performance.md")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def test_block_scorer(data_hparams: dict[str, Any], scene: Path, labels: Path
                      ) -> Callable[[TileClassifier], dict[str, float]]:
    """A function scoring a classifier by macro-IoU on the test blocks of ``scene``."""
    from training.data.datamodule import LandCoverDataModule

    dm = LandCoverDataModule.from_hparams(data_hparams)
    dm.setup("test")
    assert dm.assignment is not None
    with rasterio.open(labels) as src:
        truth = src.read(1)
        test = ~geometry_mask([dm.assignment.geometry(2)], truth.shape, src.transform)
    classes = [c for c in np.unique(truth[test]) if c != 0]

    def score(classifier: TileClassifier) -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp:
            out = classify_file(scene, Path(tmp) / "c.tif", classifier)
            with rasterio.open(out.path) as src:
                pred = src.read(1)
        keep = test & (truth != 0)
        ious = []
        for c in classes:
            inter = np.sum((pred == c) & (truth == c) & keep)
            union = np.sum(((pred == c) | (truth == c)) & keep)
            ious.append(inter / union if union else 0.0)
        return {"test_IoU_macro": float(np.mean(ious)),
                "test_pixel_accuracy": float(np.mean(pred[keep] == truth[keep]))}

    return score


def run_bench(
    experiment: str = "cacaomap-demo", models_dir: Path = Path("models/cacaomap"),
    data: Path = Path("datasets/synthetic/data/demo"),
    out_dir: Path = Path("experiments/benchmarks"), work: Path = Path(".bench"),
    tile_sizes: tuple[int, ...] = (256, 512), batch_sizes: tuple[int, ...] = (1, 2, 4, 8,
                                                                              16, 32),
    scene_size: int = SENTINEL2_TILE, clients: tuple[int, ...] = (1, 4, 16, 64),
    service_seconds: float = 10.0, redo: tuple[str, ...] = (),
) -> Path:
    """Run every benchmark and write the JSON (see the module docstring).

    Sections already measured today with the same model are reused unless named in
    ``redo`` (``ceiling``, ``gflop_per_tile``, ``model_throughput``,
    ``session_options``, ``tta``, ``scene``, ``service``, ``client``, ``tiles_during_scene``,
    ``composite``, ``plots``, ``queues``, ``radar_composite``, ``composite_vs_peer``,
    ``radar_statistics``).
    """
    console = Console()
    torch.set_num_threads(cpu_facts()["cores"])
    run_id = latest_run(experiment)
    with checkpoint_from_run(run_id) as checkpoint:
        loaded = load_checkpoint(checkpoint)
    fp32_dir = newest_version(models_dir)
    _, contract = load_model_dir(fp32_dir)
    images = sorted((data / "composites").glob("*.tif"))
    labels = sorted((data / "labels").glob("labels_*.tif"))
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(), "mlflow_run_id": run_id,
        "model": f"{contract.name} {contract.version}",
        "machine": {**cpu_facts(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": ort.__version__}}

    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f"{result['date']}.partial.json"
    final = out_dir / f"{result['date']}.json"
    source = partial if partial.exists() else final
    done = json.loads(source.read_text()) if source.exists() else {}
    if done.get("model") != result["model"]:
        done = {}
    for name in redo:
        done.pop(name, None)

    def section(name: str, measure: Callable[[], Any]) -> None:
        """Measure a section, or reuse it from an interrupted run of today."""
        if name in done:
            console.print(f"[bold]{name}[/]: reusing today's figures ({partial})")
            result[name] = done[name]
            return
        console.print(f"[bold]{name}[/]")
        result[name] = done[name] = measure()
        partial.write_text(json.dumps(done | {"model": result["model"]}, indent=2))

    int8_dir = fp32_dir.parent / f"{fp32_dir.name}-int8"
    if not (int8_dir / "contract.json").exists():
        console.print("int8 variant: calibrated on training tiles, scored on the test block")
        calibration = real_tiles(data / "composites", contract.input_dtype, contract.num_bands,
                                 contract.tile_size, 32, seed=1)
        int8_dir = quantize_int8(fp32_dir, calibration, test_block_scorer(
            loaded.data_hparams, images[-1], labels[-1]))
    result["int8"] = load_model_dir(int8_dir)[1].quantization
    model = loaded.task.model.eval()
    section("ceiling", lambda: {"matmul_gflops": matmul_gflops(),
                                "theoretical": theoretical_peak(result["machine"])})
    section("gflop_per_tile", lambda: {str(t): gflop_per_tile(model, contract.num_bands, t)
                                       for t in tile_sizes})
    engines = {"ort_fp32": TileClassifier.from_model_dir(fp32_dir),
               "ort_int8": TileClassifier.from_model_dir(int8_dir)}
    section("model_throughput", lambda: model_throughput(
        model, engines, contract, list(tile_sizes), list(batch_sizes),
        progress=console.print))
    section("session_options", lambda: session_options(fp32_dir / "model.onnx", contract))
    section("tta", lambda: tta_cost(fp32_dir))

    work.mkdir(exist_ok=True)

    def scenes() -> dict[str, Any]:
        quarter = scene_size // 2
        full = build_scene(images[-1], work / f"scene_{scene_size}.tif", scene_size)
        part = build_scene(images[-1], work / f"scene_{quarter}.tif", quarter)
        out = work / "out.tif"
        return {"int8_full": classify_scene_child(int8_dir, full, out),
                "int8_quarter": classify_scene_child(int8_dir, part, out),
                "fp32_quarter": classify_scene_child(fp32_dir, part, out),
                "overlap": contract.overlap, "tile": contract.tile_size}

    section("scene", scenes)
    tile = real_tiles(data / "composites", contract.input_dtype, contract.num_bands,
                      contract.tile_size, 1, seed=2)[0]
    section("service", lambda: service_throughput(int8_dir, tile, list(clients),
                                                  service_seconds, work))
    section("client", lambda: client_bench(int8_dir, tile, service_seconds, work))
    section("tiles_during_scene", lambda: tiles_while_scene(
        int8_dir, tile, build_scene(images[-1], work / f"scene_{scene_size}.tif", scene_size),
        service_seconds, work))
    section("composite", lambda: composite_bench(work / "composite"))
    section("plots", lambda: plots_bench(work / "plots", fp32_dir))
    section("queues", lambda: queues_before_after(int8_dir, tile, work / "queues"))
    section("radar_composite", lambda: radar_composite_bench(work / "radar"))
    section("composite_vs_peer", lambda: composite_vs_peer(work / "composite"))
    section("radar_statistics", lambda: radar_statistics_bench(work / "radar_statistics"))
    path = out_dir / f"{result['date']}.json"
    path.write_text(json.dumps(result, indent=2))
    partial.unlink(missing_ok=True)
    summary = summarise(result)
    print_tables(result, summary, console)
    update_performance_page(result, summary)
    console.print(f"Wrote {path} and the measured section of docs/performance.md.")
    return path


def add_session_options(out_dir: Path = Path("experiments/benchmarks"),
                        models_dir: Path = Path("models/cacaomap")) -> Path:
    """Measure the ORT option table into the newest benchmark JSON and the performance page."""
    path = sorted(out_dir.glob("*.json"))[-1]
    result = json.loads(path.read_text())
    fp32_dir = newest_version(models_dir)
    onnx_path, contract = load_model_dir(fp32_dir)
    torch.set_num_threads(cpu_facts()["cores"])
    result["session_options"] = session_options(onnx_path, contract)
    path.write_text(json.dumps(result, indent=2))
    summary = summarise(result)
    print_tables(result, summary, Console())
    update_performance_page(result, summary)
    return path


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """The goal ratios, from the raw figures."""
    tile = r["scene"]["tile"]
    rows = [x for x in r["model_throughput"] if x["tile"] == tile]
    best = {k: max(x[k] for x in rows) for k in ("eager_fp32", "ort_fp32", "ort_int8")}
    at8 = next((x for x in rows if x["batch"] == 8), rows[-1])
    gflop = r["gflop_per_tile"][str(tile)]
    stride = tile - r["scene"]["overlap"]
    full = r["scene"]["int8_full"]
    model_mpx = at8["ort_int8"] * stride**2 / 1e6  # new pixels per window
    # Runs before the binary form existed sent nested lists only.
    sent = "binary" if any(x.get("payload") == "binary" for x in r["service"]) else "lists"
    svc = {(x["batching"], x["clients"]): x for x in r["service"]
           if x.get("payload", "lists") == sent}
    on16, off16 = svc.get(("on", 16)), svc.get(("off", 16))
    # The model's own compute: the session alone (older runs: the serving path).
    session = max(x.get("ort_fp32_session", x["ort_fp32"]) for x in rows)
    return {
        "best_tiles_per_s": best,
        "ort_fp32_vs_eager": best["ort_fp32"] / best["eager_fp32"],
        "ort_int8_vs_eager": best["ort_int8"] / best["eager_fp32"],
        "fp32_session_tiles_per_s": session,
        "fp32_gflops_achieved": session * gflop,
        "fp32_fraction_of_peak": session * gflop / r["ceiling"]["theoretical"]["gflops"],
        "fp32_fraction_of_matmul": session * gflop / r["ceiling"]["matmul_gflops"],
        "scene_seconds_int8": full["seconds"],
        "scene_efficiency": full["mpx_per_s"] / model_mpx,
        "scene_peak_rss_mb": full["peak_rss_mb"],
        "scene_rss_vs_quarter": full["peak_rss_mb"] / r["scene"]["int8_quarter"][
            "peak_rss_mb"],
        "service16_vs_offline": on16["requests_per_s"] / at8["ort_int8"] if on16 else None,
        "service16_on_vs_off": on16["requests_per_s"] / off16["requests_per_s"]
        if on16 and off16 else None,
        "int8_delta_IoU_macro": r["int8"].get("delta_test_IoU_macro"),
        "tile_p99_during_scene_vs_idle": (r.get("tiles_during_scene") or {}).get(
            "p99_ratio"),
        # What this machine allows, whatever the code: the scene cannot be faster than
        # its windows at the best int8 rate; ORT cannot beat eager by more than the
        # matmul ceiling over eager's rate; batching cannot beat single-tile requests
        # by more than the best batch's rate over batch 1's.
        "scene_seconds_bound": full["windows"] / best["ort_int8"],
        "ort_vs_eager_bound": r["ceiling"]["matmul_gflops"] / (best["eager_fp32"] * gflop),
        "batching_gain_bound": best["ort_int8"] / next(
            x["ort_int8"] for x in rows if x["batch"] == 1),
    }


def print_tables(r: dict[str, Any], s: dict[str, Any], console: Console) -> None:
    """The model table and the goals table."""
    t = Table(title=f"tiles/s on {r['machine']['model']} ({r['machine']['cores']} cores)")
    for col in ("tile", "batch", "eager fp32", "ORT fp32", "ORT int8",
                "session fp32", "session int8"):
        t.add_column(col, justify="right")
    for x in r["model_throughput"]:
        t.add_row(str(x["tile"]), str(x["batch"]), *(
            f"{x[k]:.1f}" if k in x else "-" for k in (
                "eager_fp32", "ort_fp32", "ort_int8", "ort_fp32_session",
                "ort_int8_session")))
    console.print(t)
    if r.get("session_options"):
        o = Table(title="ONNX Runtime options, fp32, 256 px, batch 8 (tiles/s)")
        o.add_column("option")
        o.add_column("tiles/s", justify="right")
        for row in r["session_options"]:
            o.add_row(row["option"], f"{row['tiles_per_s']:.2f}")
        console.print(o)
    g = Table(title="Goals (issue 6)")
    g.add_column("quantity")
    g.add_column("measured", justify="right")
    for k, v in s.items():
        g.add_row(k, json.dumps(v) if isinstance(v, dict) else
                  "n/a" if v is None else f"{v:.3f}")
    console.print(g)


def update_performance_page(r: dict[str, Any], s: dict[str, Any],
                            page: Path = PERFORMANCE_PAGE) -> None:
    """Replace the measured section of the performance page with these figures."""
    m = r["machine"]
    lines = [
        START,
        f"Measured {r['date']} by `make bench` on {m['model']}, {m['cores']} logical "
        f"cores (AVX-512 VNNI: {m['avx512_vnni']}), no GPU; torch {m['torch']}, "
        f"ONNX Runtime {m['onnxruntime']}; model {r['model']} (U-Net/ResNet-18, "
        f"10 bands); raw figures in `experiments/benchmarks/{r['date']}.json`.",
        "",
        "| | figure |", "|---|---|",
        f"| best tiles/s at {r['scene']['tile']} px: eager fp32 / ORT fp32 / ORT int8 | "
        + " / ".join(f"{v:.1f}" for v in s["best_tiles_per_s"].values()) + " |",
        f"| ORT fp32 ÷ eager, ORT int8 ÷ eager | {s['ort_fp32_vs_eager']:.2f}x, "
        f"{s['ort_int8_vs_eager']:.2f}x |",
        f"| int8 macro-IoU change on the test block | "
        f"{(s['int8_delta_IoU_macro'] or 0):+.4f} |",
        f"| GFLOP per {r['scene']['tile']} px tile (counted) | "
        f"{r['gflop_per_tile'][str(r['scene']['tile'])]:.1f} |",
        f"| fp32 session alone, best tiles/s | {s['fp32_session_tiles_per_s']:.1f} |",
        f"| fp32 achieved GFLOP/s (session) ÷ nominal peak "
        f"({r['ceiling']['theoretical']['gflops']:.0f} GFLOP/s: cores x 2 FMA x lanes "
        f"x 2 x the reported {r['ceiling']['theoretical']['ghz']:.2f} GHz, not the "
        f"boost clock) ÷ measured matmul ({r['ceiling']['matmul_gflops']:.0f}) | "
        f"{s['fp32_gflops_achieved']:.0f}: {s['fp32_fraction_of_peak']:.0%}, "
        f"{s['fp32_fraction_of_matmul']:.0%}"
        + ("; above the nominal peak, so the cores run above the reported clock"
           if s["fp32_fraction_of_peak"] > 1 else "") + " |",
        f"| 10980² scene end to end, int8 (read, tile, infer, blend, COG) | "
        f"{s['scene_seconds_int8']:.0f} s, efficiency {s['scene_efficiency']:.2f}, peak RSS "
        f"{s['scene_peak_rss_mb']:.0f} MB ({s['scene_rss_vs_quarter']:.2f}x the quarter) |",
        "| service, 16 clients, batching on: ÷ offline, ÷ batching off | "
        + (f"{s['service16_vs_offline']:.2f}, {s['service16_on_vs_off']:.2f}"
           if s["service16_vs_offline"] else "n/a") + " |",
        f"| bounds on this machine: scene ≥ windows ÷ best int8 tiles/s; ORT ÷ eager ≤ "
        f"matmul ceiling ÷ eager GFLOP/s; batching gain ≤ best batch ÷ batch 1 | "
        f"{s['scene_seconds_bound']:.0f} s; {s['ort_vs_eager_bound']:.2f}x; "
        f"{s['batching_gain_bound']:.2f}x |",
    ]
    during = r.get("tiles_during_scene")
    if during:
        idle, busy = during["idle"], during["during_scene"]
        lines.append(
            f"| tile p50 / p99 ms, one client: idle → while a {during['scene_side']}² "
            f"scene is classified ({during['scene'].get('seconds', 0):.0f} s, answered "
            f"{during['scene'].get('status')}); p99 ratio | "
            f"{idle['p50_ms']:.0f} / {idle['p99_ms']:.0f} → {busy['p50_ms']:.0f} / "
            f"{busy['p99_ms']:.0f}; {during['p99_ratio']:.2f}x |")
    composite = r.get("composite")
    if composite:
        runs = composite["runs"]
        sides = sorted({int(k.split("_")[0]) for k in runs})
        per_side = "; ".join(
            f"{runs[f'{side}_w1']['seconds']:.0f} → {runs[f'{side}_w2']['seconds']:.0f} s, "
            f"{runs[f'{side}_w1']['peak_rss_mb']:.0f} → "
            f"{runs[f'{side}_w2']['peak_rss_mb']:.0f} MB" for side in sides)
        lines.append(
            f"| composite of {composite['acquisitions']} acquisitions x "
            f"{composite['bands']} bands (SCL, offset, median, COG), "
            + " / ".join(f"{side}²" for side in sides)
            + ": seconds and peak RSS with 1 → 2 dask workers | "
            + per_side + f"; area x{composite['area_ratio']:.0f} → time "
            f"x{composite['time_ratio_large_over_small']:.2f}, RSS "
            f"x{composite['rss_ratio_large_over_small']:.2f} |")
    plots = r.get("plots")
    if plots:
        one, four, before = plots["store_1x1"], plots["store_2x2"], plots["baseline_before"]
        service = plots["service"]
        lines.append(
            f"| {plots['plots']:,} plots of 1-4 ha (half points with Area) on a "
            f"{plots['tile_px']}² store: seconds and peak RSS, one cell → 2 x 2 cells; "
            f"before (`cacaomap maps baseline`, whole maps in memory); `POST /plots` end to "
            f"end | {one['seconds']:.1f} s, {one['peak_rss_mb']:.0f} MB → "
            f"{four['seconds']:.1f} s, {four['peak_rss_mb']:.0f} MB; {before['seconds']:.1f}"
            f" s, {before['peak_rss_mb']:.0f} MB; {service['seconds']:.1f} s (HTTP "
            f"{service['status']}) |")
        refs = plots.get("store_1x1_references")
        if refs:
            lines.append(
                f"| the same {plots['plots']:,} plots on the one-cell store with three "
                f"reference layers beside it (JRC-style 10 m, Hansen-style 30 m, RADD-style "
                f"10 m, EPSG:4326): seconds and peak RSS; ÷ the store alone | "
                f"{refs['seconds']:.1f} s, {refs['peak_rss_mb']:.0f} MB; "
                f"{plots['references_time_ratio']:.2f}x the time, "
                f"{refs['peak_rss_mb'] / one['peak_rss_mb']:.2f}x the peak RSS |")
    queues = r.get("queues")
    if queues:
        lines.append(
            f"| separate bounded queues, same run: tiles/s ({queues['clients']} clients) "
            f"and plots/s ({queues['plots']:,} plots) after ÷ before "
            f"({queues['before_revision']}) | {queues['tiles_ratio']:.2f}x, "
            f"{queues['plots_ratio']:.2f}x |")
    radar = r.get("radar_composite")
    if radar:
        lines.append(
            f"| radar statistics of {radar['acquisitions']} Sentinel-1 acquisitions "
            "stacked on the optical composite (`imagery stack-radar`): seconds and peak "
            "RSS by side | " + "; ".join(
                f"{side}²: {run['seconds']:.0f} s, {run['peak_rss_mb']:.0f} MB"
                + (f" ({run['workers']} threads {run['threaded_speedup']:.2f}x)"
                   if "threaded_speedup" in run else "")
                for side, run in radar["runs"].items()) + " |")
    stats = r.get("radar_statistics")
    if stats:
        rows = stats["summary"]
        lines.append(
            "| radar statistics, one family left out (random forest, macro IoU vs all "
            f"statistics, mean of {len(stats['seeds'])} landscapes; docs/radar.md) | "
            + "; ".join(f"{name.removeprefix('without ')}: {row['iou']['vs_all_mean']:+.3f}"
                        for name, row in rows.items() if name.startswith("without "))
            + f"; Lee 5x5: {rows['all statistics, Lee 5x5']['iou']['vs_all_mean']:+.3f} "
            f"(at edges {rows['all statistics, Lee 5x5']['iou_at_edges']['vs_all_mean']:+.3f})"
            " |")
    peer = r.get("composite_vs_peer")
    if peer:
        lines.append(
            f"| optical composite ({peer['acquisitions']} acquisitions) ÷ the idiomatic "
            "`odc.stac.load` + SCL mask + xarray median peer, same items: time, peak RSS "
            "(largest output difference) | " + "; ".join(
                f"{side}²: {x['time_ratio']:.2f}x, {x['rss_ratio']:.2f}x "
                f"({x['max_abs_difference_dn']} DN)"
                for side, x in peer.items() if isinstance(x, dict)) + " |")
    tta = r.get("tta")
    if tta:
        lines.append(
            f"| test-time augmentation (`CACAOMAP_TTA`), ORT fp32 {tta[0]['tile']} px batch "
            f"{tta[0]['batch']}: tiles/s " + " / ".join(row["tta"] for row in tta)
            + " (÷ none) | " + " / ".join(
                f"{row['tiles_per_s']:.1f} ({row['ratio']:.2f}x)" for row in tta) + " |")
    for row in r.get("session_options", []):
        lines.append(f"| ORT fp32 256 px batch 8, {row['option']} | "
                     f"{row['tiles_per_s']:.2f} tiles/s |")
    lines += ["", "Service, one tile per request (`bentoml serve`, loopback):", "",
              "| batching | payload | clients | req/s | p50 / p95 / p99 ms | mean batch | "
              "statuses |", "|---|---|---|---|---|---|---|"]
    for x in r["service"]:
        pct = " / ".join("-" if x[f"p{q}_ms"] is None else f"{x[f'p{q}_ms']:.0f}"
                         for q in (50, 95, 99))
        batch = x.get("mean_batch_size")
        lines.append(f"| {x['batching']} | {x.get('payload', 'lists')} | {x['clients']} | "
                     f"{x['requests_per_s']:.2f} | {pct} | "
                     f"{'-' if batch is None else f'{batch:.1f}'} | "
                     f"{', '.join(f'{k}: {v}' for k, v in x['statuses'].items())} |")
    lines.append(END)
    text = page.read_text()
    if START in text:
        head, rest = text.split(START, 1)
        text = head + "\n".join(lines) + rest.split(END, 1)[1]
    else:
        text = text.replace("## Limits known today",
                            "## Performance\n\n" + "\n".join(lines) + "\n\n## Limits known today")
    page.write_text(text)
