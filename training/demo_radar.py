"""The radar half of ``make demo``: a model on optical + radar beside the optical one.

The demo trains a second model on the same landscape with the period's Sentinel-1
statistics stacked on the optical composite (``experiments/demo_radar.yaml``), exports
it as ``cacaomap-s1s2``, builds a store with ``--radar`` and checks the same plots
against the same truth. Plots under a cloud that stayed all year are
``insufficient_data`` in the optical truth (no clear pixel); their truth "had the
ground been seen" comes from the generator's land-cover maps (``labels/cover_*.tif``),
and they are scored against it. Printed side by side with the optical-only run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from serving.plots.check import CheckOptions, run_checks
from serving.radar.acquisitions import describe
from serving.store.build import BuildOptions, build_store
from serving.store.landscape import store_landscape
from serving.store.reader import open_store, pair_of_maps
from training.export.exporter import export_model
from training.export.registry import checkpoint_from_run, test_metrics_of_run

#: The MLflow experiment of the optical + radar demo run.
RADAR_EXPERIMENT = "cacaomap-demo-radar"
#: The exported model's name (``models/cacaomap-s1s2/v<N>``).
RADAR_MODEL = "cacaomap-s1s2"


@dataclass
class DemoRun:
    """What one model of the demo answered, for the side-by-side table."""

    name: str
    records: list[dict[str, Any]]
    loss_ha: float
    run_id: str = ""


def iou_table(runs: list[DemoRun]) -> tuple[Table, dict[str, dict[str, float]]]:
    """Per-class IoU of each run on its test blocks (MLflow ``test_IoU_*``)."""
    metrics = {run.name: {k.removeprefix("test_IoU_"): v
                          for k, v in test_metrics_of_run(run.run_id).items()
                          if k.startswith("test_IoU_")} for run in runs if run.run_id}
    table = Table(title="IoU per class on the test blocks (reference year)")
    names = sorted({c for m in metrics.values() for c in m}, key=lambda c: c == "macro")
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    for run, values in metrics.items():
        table.add_row(run, *(f"{values.get(n, float('nan')):.3f}" for n in names))
    return table, metrics


def verdict_figures(run: DemoRun, truth: list[dict[str, Any]],
                    cover_truth: list[dict[str, Any]], true_loss_ha: float,
                    cover_loss_ha: float | None = None) -> dict[str, Any]:
    """Loss and verdict agreement of one run; cloud plots scored on the cover truth.

    Args:
        run: The run's plot records and landscape loss.
        truth: Verdicts on the truth as optical imagery could see it.
        cover_truth: Verdicts on the true land cover, under clouds too.
        true_loss_ha: The truth's landscape loss (where optical saw the ground).
        cover_loss_ha: The true land cover's landscape loss (everywhere).
    """
    cloud = [i for i, t in enumerate(truth) if t["verdict"] == "insufficient_data"]
    best = [cover_truth[i] if i in cloud else t for i, t in enumerate(truth)]
    verdicts = [r.get("model_verdict", r["verdict"]) for r in run.records]
    agree = sum(v == t["verdict"] for v, t in zip(verdicts, best, strict=True))
    cloud_given = [i for i in cloud if verdicts[i] not in ("insufficient_data", "error")]
    cloud_agree = sum(verdicts[i] == cover_truth[i]["verdict"] for i in cloud)
    radar_only = [r.get("radar_only_fraction") for r in run.records]
    return {
        "model": run.name,
        "loss_vs_truth": run.loss_ha / true_loss_ha - 1 if true_loss_ha else None,
        "loss_vs_cover_truth": run.loss_ha / cover_loss_ha - 1 if cover_loss_ha else None,
        "plots": len(verdicts), "agree": agree, "agree_share": agree / max(1, len(verdicts)),
        "cloud_plots": len(cloud), "cloud_with_verdict": len(cloud_given),
        "cloud_agree": cloud_agree, "cloud_agree_share": cloud_agree / max(1, len(cloud)),
        "needs_review": verdicts.count("needs_review"),
        "mean_radar_only_fraction": (sum(f for f in radar_only if f is not None)
                                     / max(1, sum(f is not None for f in radar_only))),
    }


def comparison_table(rows: list[dict[str, Any]]) -> Table:
    """Optical only beside optical + radar, against the same truth."""
    table = Table(title="Optical only vs optical + radar (same landscape, same truth; "
                  "plots under a cloud all year scored on the true land cover)")
    for col in ("model", "forest loss vs truth (seen / all)", "verdicts agreeing",
                "cloud plots with a "
                "verdict", "cloud plots agreeing", "needs_review", "share by radar alone"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        loss = " / ".join("n/a" if r.get(k) is None else f"{r[k]:+.1%}"
                          for k in ("loss_vs_truth", "loss_vs_cover_truth"))
        table.add_row(r["model"], loss, f"{r['agree']}/{r['plots']} ({r['agree_share']:.0%})",
                      f"{r['cloud_with_verdict']}/{r['cloud_plots']}",
                      f"{r['cloud_agree']}/{r['cloud_plots']} ({r['cloud_agree_share']:.0%})",
                      str(r["needs_review"]), f"{r['mean_radar_only_fraction']:.1%}")
    return table


def run_radar_demo(run_id: str, optical: DemoRun, truth: list[dict[str, Any]],
                   true_loss_ha: float, region: Any, periods: dict[str, str],
                   items: list[Any], data: Path, out_dir: Path, models_dir: Path,
                   cell_size_m: float, console: Console) -> list[dict[str, Any]]:
    """Export the optical + radar run, build its store, check the plots, compare.

    Args:
        run_id: The optical + radar MLflow run (experiment :data:`RADAR_EXPERIMENT`).
        optical: The optical-only run's plot records and landscape loss.
        truth: Verdicts on the optical truth maps (``labels/labels_*.tif``).
        true_loss_ha: The truth's landscape forest loss.
        region: The store's region (lon/lat).
        periods: The demo's periods.
        items: The STAC items of the optical acquisitions.
        data: The demo's data folder (``radar/``, ``labels/``, the plots).
        out_dir: Where the store and the comparison JSON go.
        models_dir: Where the model is exported.
        cell_size_m: The store's cell size.
        console: Where the tables go.

    Returns:
        The two rows of the comparison (also printed and written as JSON).
    """
    console.print(f"Exporting the optical + radar run {run_id} as {RADAR_MODEL}")
    with checkpoint_from_run(run_id) as checkpoint:
        model_dir = export_model(checkpoint, name=RADAR_MODEL,
                                 models_dir=models_dir, mlflow_run_id=run_id,
                                 test_metrics=test_metrics_of_run(run_id))
    radar = [describe(path) for path in sorted((data / "radar").glob("*.tif"))]
    started = time.perf_counter()
    store_dir = out_dir / "store-s1s2"
    built = build_store(store_dir, region, periods, items, model_dir,
                        BuildOptions(cell_size_m=cell_size_m), radar=radar)
    if built.failed:
        raise ValueError(f"the optical + radar store failed for {built.failed}")
    store = open_store(store_dir)
    console.print(f"Store {store_dir} with {len(radar)} Sentinel-1 acquisitions: "
                  f"{time.perf_counter() - started:.0f} s")
    plots = (data / "plots_eudr.geojson").read_bytes()
    options = CheckOptions(min_forest_ha=float(store.meta["min_forest_ha"]))
    _, records, _ = run_checks(plots, store, options)
    cover_ref, cover_cur = sorted((data / "labels").glob("cover_*.tif"))
    cover_maps = pair_of_maps(cover_ref, cover_cur, store.schema, with_confidence=False)
    _, cover_truth, _ = run_checks(plots, cover_maps, options)
    cover_loss = store_landscape(cover_maps, region, options.min_forest_ha)[
        "forest_loss_ha"]
    both = DemoRun("optical + radar", records, store.meta["landscape"]["forest_loss_ha"],
                   run_id)
    rows = [verdict_figures(run, truth, cover_truth, true_loss_ha, cover_loss)
            for run in (optical, both)]
    console.print(comparison_table(rows))
    table, iou = iou_table([optical, both])
    console.print(table)
    (out_dir / "radar_comparison.json").write_text(json.dumps(
        {"verdicts": rows, "test_iou": iou}, indent=1))
    return rows
