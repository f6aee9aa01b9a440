"""The serving half of ``make demo``: export, build the region's store, check plots over HTTP.

1. Export the newest demo run (parity check, MLflow registry, BentoML store).
2. Build the baseline store of the landscape's region from its STAC catalogue: per
   cell of the UTM grid and per period (2020, 2024) a composite, a class map and its
   confidence (:mod:`serving.store.build`; resumable, so a rerun with the same model
   and imagery skips every cell).
3. Start a real ``bentoml serve`` on 127.0.0.1 with ``CACAOMAP_STORE``, classify the
   monitoring-year composite over HTTP (hectares per class), and send the plots as an
   EUDR statement (points with ``Area`` up to 4 ha, polygons above) to ``POST /plots``.
4. Print the verdicts against the truth: the same checks on the generator's truth
   maps, plot by plot, and the landscape's forest loss (store vs truth).
5. The same for the optical + radar run, beside the optical one
   (:mod:`training.demo_radar`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import mlflow
from rich.console import Console
from rich.table import Table

from serving.http.local_server import served_model
from serving.inference.model_store import MODELS_DIR
from serving.plots.check import CheckOptions, run_checks
from serving.store.build import BuildOptions, build_store
from serving.store.landscape import store_landscape
from serving.store.reader import open_store, pair_of_maps, region_of
from training.demo_radar import RADAR_EXPERIMENT, DemoRun, run_radar_demo
from training.export.exporter import export_model
from training.export.registry import checkpoint_from_run, test_metrics_of_run
from training.tracking import resolve_tracking_uri

#: Periods of the demo's catalogue.
PERIODS = {"reference": "2020-01-01/2020-12-31", "current": "2024-01-01/2024-12-31"}
#: Cells of 2.56 km: the 7.68 km landscape spans several, so plots straddle cells.
DEMO_CELL_SIZE_M = 2560.0


def latest_run(experiment: str) -> str:
    """Id of the newest finished run of an experiment."""
    client = mlflow.MlflowClient(resolve_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment {experiment!r}: train first")
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise ValueError(f"no finished run in {experiment!r}: train first")
    return str(runs[0].info.run_id)


def _post_scene(url: str, scene: Path) -> dict[str, Any]:
    with open(scene, "rb") as f:
        r = httpx.post(f"{url}/classify_scene_summary", timeout=900,
                       files={"scene": (scene.name, f, "image/tiff")})
    r.raise_for_status()
    return dict(r.json())


def against_truth(model: list[dict[str, Any]], truth: list[dict[str, Any]],
                  model_loss: float, true_loss: float) -> list[str]:
    """The plot verdicts and the landscape's loss against the truth, in four lines."""
    pairs = [({**m, "verdict": m.get("model_verdict", m["verdict"])}, t)
             for m, t in zip(model, truth, strict=True)]  # the model's own verdicts
    agree = sum(m["verdict"] == t["verdict"] for m, t in pairs)
    unseen = [m for m, t in pairs if t["verdict"] == "insufficient_data"]
    found = sum(m["verdict"] == "insufficient_data" for m in unseen)
    review = [t["verdict"] for m, t in pairs if m["verdict"] == "needs_review"]
    relative = model_loss / true_loss - 1 if true_loss else float("nan")
    return [
        f"Landscape forest loss (patches >= 0.5 ha): model {model_loss:,.1f} ha, truth "
        f"{true_loss:,.1f} ha ({relative:+.1%})",
        f"Plot verdicts agreeing with the truth: {agree}/{len(pairs)} "
        f"({agree / max(1, len(pairs)):.1%})",
        f"Plots whose truth is insufficient_data reported as such: {found}/{len(unseen)} "
        f"({found / max(1, len(unseen)):.1%})",
        f"Plots marked needs_review (low confidence): {len(review)}; their truth: "
        f"{json.dumps({v: review.count(v) for v in sorted(set(review))})}",
    ]


def convergence_lines(records: list[dict[str, Any]], truth: list[dict[str, Any]]
                      ) -> list[str]:
    """Verdicts against the truth without and with the reference layers' review."""
    pairs = list(zip(records, truth, strict=True))
    alone = sum(r.get("model_verdict", r["verdict"]) == t["verdict"] for r, t in pairs)
    kept = [(r, t) for r, t in pairs if r["verdict"] != "needs_review"]
    agree = sum(r["verdict"] == t["verdict"] for r, t in kept)
    flagged = [(r, t) for r, t in pairs
               if r["verdict"] == "needs_review" and (r.get("convergence") or {}).get("reasons")]
    wrong = sum(r.get("model_verdict") != t["verdict"] for r, t in flagged)
    lines = [
        f"Verdicts against the truth, the model alone: {alone}/{len(pairs)} "
        f"({alone / max(1, len(pairs)):.1%})",
        f"With the reference layers beside it: {len(flagged)} plots where they disagree "
        f"are needs_review ({wrong} of them the model had wrong); over the other "
        f"{len(kept)} plots, {agree}/{len(kept)} agree ({agree / max(1, len(kept)):.1%})",
    ]
    lines += [f"  needs_review {r['plot_id']} (truth {t['verdict']}): "
              + "; ".join(r["convergence"]["reasons"]) for r, t in flagged[:5]]
    return lines


def agreement_rich_table(records: list[dict[str, Any]], truth: list[dict[str, Any]],
                         thresholds: Any) -> Table:
    """Per reference layer: agreement with the model and with the truth."""
    from serving.plots.reference_checks import agreement_table

    rows = agreement_table(records, thresholds, {str(t["plot_id"]): t for t in truth})
    table = Table(title="Reference layers beside the model (plots judged: agreement with "
                        "the model / with the truth)")
    for col in ("layer", "loss after the cutoff", "forest at the cutoff"):
        table.add_column(col)

    def cell(row: dict[str, Any], what: str) -> str:
        if not row[f"{what}_plots"] and not row[f"{what}_truth"]:
            return "-"
        return (f"{row[f'{what}_plots']}: {row[f'{what}_agreement_model'] or 0:.0%} / "
                f"{row[f'{what}_agreement_truth'] or 0:.0%}")

    for row in rows:
        table.add_row(row["source"], cell(row, "loss"), cell(row, "forest"))
    return table


def uncertainty_on_test_blocks(checkpoint: Path, model_dir: Path, data: Path,
                               console: Console) -> dict[str, float]:
    """Mean uncertainty where the exported model is right and wrong, on the test blocks.

    The reference composite (the one trained on) is classified through the serving
    path and scored on its labels, only on the blocks of the checkpoint's test split.
    """
    from serving.inference.contract import load_model_dir
    from serving.inference.evaluation import evaluate_images
    from serving.inference.tiles import TileClassifier
    from training.evaluate import split_area
    from training.export.exporter import load_checkpoint

    image = sorted((data / "composites").glob("s2l2a_2020*.tif"))[-1]
    labels = sorted((data / "labels").glob("labels_2020*.tif"))[-1]
    within = split_area(load_checkpoint(checkpoint).data_hparams, "test")
    result = evaluate_images([(image, labels)], TileClassifier(*load_model_dir(model_dir)),
                             within=within)
    u = result.uncertainty
    console.print(f"Uncertainty (1 - confidence) on the test blocks of {image.name}: "
                  f"mean {u['right']:.3f} where the model is right ({u['right_pixels']:,} "
                  f"px), {u['wrong']:.3f} where it is wrong ({u['wrong_pixels']:,} px); "
                  f"macro IoU {result.pooled.table['IoU']['macro']:.3f}")
    return u


#: The synthetic landscape's reference layers (``cacaomap imagery synth`` writes them).
REFERENCE_LAYERS = ("jrc_gfc2020", "hansen_gfc", "radd")


def run_demo_serving(
    experiment: str = "cacaomap-demo",
    data: Path = Path("datasets/synthetic/data/demo"),
    out_dir: Path = Path("experiments/demo-output"),
    models_dir: Path = MODELS_DIR,
    radar_experiment: str = RADAR_EXPERIMENT,
) -> None:
    """Export the newest demo run, build the store, serve it, check the plots.

    Then, if the optical + radar run of ``radar_experiment`` exists, the same plots on
    its model and store, side by side (:mod:`training.demo_radar`).
    """
    from rich.progress import Progress

    from serving.imagery.sources import items_from_file
    from serving.plots.report_files import write_outputs

    console = Console()
    run_id = latest_run(experiment)
    console.print(f"Exporting run {run_id} (parity check, MLflow registry, BentoML store)")
    with checkpoint_from_run(run_id) as checkpoint:
        model_dir = export_model(
            checkpoint, models_dir=models_dir, mlflow_run_id=run_id,
            test_metrics=test_metrics_of_run(run_id),
        )
        uncertainty_on_test_blocks(checkpoint, model_dir, data, console)
    store_dir = out_dir / "store"
    region = region_of({"region": json.loads((data / "region.geojson").read_text())[
        "features"][0]["geometry"]})
    started = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task("building the store (cells x periods)", total=None)
        built = build_store(store_dir, region, PERIODS,
                            items_from_file(data / "stac" / "catalog.json"), model_dir,
                            BuildOptions(cell_size_m=DEMO_CELL_SIZE_M),
                            on_task=lambda d, t: bar.update(task, completed=d, total=t))
    if built.failed:
        raise ValueError(f"store build failed for {built.failed}")
    store = open_store(store_dir)
    console.print(f"Store {store_dir}: {len(store.meta['cells'])} cells x 2 periods "
                  f"({len(built.done)} built now, {len(built.skipped)} already done) in "
                  f"{time.perf_counter() - started:.0f} s")
    plots_file = data / "plots_eudr.geojson"
    statement = json.loads(plots_file.read_text())
    points = sum(f["geometry"]["type"] == "Point" for f in statement["features"])
    current = sorted((data / "composites").glob("s2l2a_2024*.tif"))[-1]
    layers = ";".join(f"{name}={data / 'reference_layers' / name}"
                      for name in REFERENCE_LAYERS)
    console.print(f"Serving {model_dir} on 127.0.0.1 with CACAOMAP_STORE={store_dir} and "
                  f"the reference layers {', '.join(REFERENCE_LAYERS)}")
    with served_model(model_dir, extra_env={"CACAOMAP_STORE": str(store_dir),
                                            "CACAOMAP_REFERENCE_LAYERS": layers}) as url:
        summary = _post_scene(url, current)
        r = httpx.post(f"{url}/plots", content=plots_file.read_bytes(), timeout=900,
                       headers={"content-type": "application/geo+json"})
        r.raise_for_status()
        answer = r.json()
    table = Table(title=f"Classes of {current.name} (served by {model_dir})")
    for col in ("class", "pixels", "hectares"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, ha in summary["hectares"].items():
        table.add_row(name, f"{summary['class_pixels'][name]:,}", f"{ha:,.2f}")
    console.print(table)
    records = [f["properties"]["cacaomap"] for f in answer["features"]]
    console.print(f"POST /plots: {len(records)} plots ({points} declared as points with "
                  f"Area, {len(records) - points} polygons): {answer['verdicts']}")

    # The same checks on the generator's truth maps, with the store's thresholds.
    truth_ref, truth_cur = sorted((data / "labels").glob("labels_*.tif"))
    truth_maps = pair_of_maps(truth_ref, truth_cur, store.schema, with_confidence=False)
    options = CheckOptions(min_forest_ha=float(store.meta["min_forest_ha"]))
    _, truth, _ = run_checks(plots_file.read_bytes(), truth_maps, options)
    true_land = store_landscape(truth_maps, region, options.min_forest_ha)
    land = store.meta["landscape"]
    base = Table(title="Deforestation baseline since the reference period (store vs truth)")
    base.add_column("quantity")
    base.add_column("store ha", justify="right")
    base.add_column("truth ha", justify="right")
    base.add_row("forest at reference", f"{land['forest_ref_ha']:,.1f}",
                 f"{true_land['forest_ref_ha']:,.1f}")
    for driver, ha in land["forest_loss_by_driver_ha"].items():
        base.add_row(f"forest → {driver}", f"{ha:,.1f}",
                     f"{true_land['forest_loss_by_driver_ha'][driver]:,.1f}")
    console.print(base)
    checked, _, lineage = run_checks(plots_file.read_bytes(), store, options)
    written = write_outputs(out_dir / "plots", checked, records, lineage)
    for line in against_truth(records, truth, land["forest_loss_ha"],
                              true_land["forest_loss_ha"]):
        console.print(line)
    console.print(agreement_rich_table(records, truth, options.thresholds))
    for line in convergence_lines(records, truth):
        console.print(line)
    console.print("Plot reports: " + ", ".join(str(p) for p in written))
    try:
        radar_run = latest_run(radar_experiment)
    except ValueError as err:
        console.print(f"No optical + radar comparison: {err}")
        return
    run_radar_demo(radar_run, DemoRun("optical only", records, land["forest_loss_ha"],
                                      run_id),
                   truth, true_land["forest_loss_ha"], region, PERIODS,
                   items_from_file(data / "stac" / "catalog.json"), data, out_dir,
                   models_dir, DEMO_CELL_SIZE_M, console)
