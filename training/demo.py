"""The serving half of ``make demo``: export the demo run, serve it, classify over HTTP.

Starts a real ``bentoml serve`` on 127.0.0.1, waits for ``/readyz``, posts the
monitoring-date scene to ``/classify_scene`` (the COG class map) and
``/classify_scene_summary`` (hectares per class), prints them, and stops the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
from rich.console import Console
from rich.table import Table

from serving.http.local_server import served_model
from training.export.exporter import export_model
from training.export.registry import checkpoint_from_run, test_metrics_of_run
from training.tracking import resolve_tracking_uri


def latest_run(experiment: str) -> str:
    """Id of the newest finished run of an experiment."""
    client = mlflow.MlflowClient(resolve_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"no MLflow experiment {experiment!r}: train first")
    runs = client.search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit(f"no finished run in {experiment!r}: train first")
    return str(runs[0].info.run_id)


def _post(url: str, endpoint: str, files: dict[str, Path]) -> httpx.Response:
    handles = {k: open(p, "rb") for k, p in files.items()}
    try:
        r = httpx.post(f"{url}/{endpoint}", timeout=900, files={
            k: (files[k].name, h, "application/geo+json" if files[k].suffix == ".geojson"
                else "image/tiff") for k, h in handles.items()})
    finally:
        for h in handles.values():
            h.close()
    r.raise_for_status()
    return r


def serve_and_classify(
    scenes: list[Path], out_dir: Path, model_dir: Path, zones: Path | None = None
) -> dict[str, Any]:
    """Serve ``model_dir`` on loopback; classify each scene over HTTP into ``out_dir``.

    With two scenes (reference, current) and ``zones``, also asks ``/baseline``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"maps": []}
    with served_model(model_dir) as url:
        for scene in scenes:
            target = out_dir / f"classes_{scene.stem.split('_')[-1]}.tif"
            target.write_bytes(_post(url, "classify_scene", {"scene": scene}).content)
            result["maps"].append(target)
        result["summary"] = _post(url, "classify_scene_summary", {"scene": scenes[-1]}).json()
        if zones is not None and len(scenes) == 2:
            result["baseline"] = _post(url, "baseline", {
                "reference": result["maps"][0], "current": result["maps"][1],
                "zones": zones}).json()
    return result


def against_truth(report: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """The baseline on the model's maps against the truth, in three lines."""
    model_loss = report["landscape"]["forest_loss_ha"]
    true_loss = truth["landscape"]["forest_loss_ha"]
    pairs = list(zip(report["zones"], truth["zones"], strict=True))
    agree = sum(m["verdict"] == t["verdict"] for m, t in pairs)
    unseen = [m for m, t in pairs if t["verdict"] == "insufficient_data"]
    found = sum(m["verdict"] == "insufficient_data" for m in unseen)
    relative = model_loss / true_loss - 1 if true_loss else float("nan")
    return [
        f"Landscape forest loss: model {model_loss:,.1f} ha, truth {true_loss:,.1f} ha "
        f"({relative:+.1%})",
        f"Plot verdicts agreeing with the truth: {agree}/{len(pairs)} "
        f"({agree / max(1, len(pairs)):.1%})",
        f"Plots whose truth is insufficient_data reported as such: {found}/{len(unseen)} "
        f"({found / max(1, len(unseen)):.1%})",
    ]


def run_demo_serving(
    experiment: str = "cacaomap-demo",
    data: Path = Path("datasets/synthetic/data/demo"),
    out_dir: Path = Path("experiments/demo-output"),
    models_dir: Path = Path("models"),
) -> None:
    """Export the newest demo run, serve it, classify both dates, run the baseline."""
    from serving.baseline.report import build_report, write_report
    from serving.classes import load_classes

    console = Console()
    run_id = latest_run(experiment)
    console.print(f"Exporting run {run_id} (parity check, MLflow registry, BentoML store)")
    with checkpoint_from_run(run_id) as checkpoint:
        model_dir = export_model(
            checkpoint, models_dir=models_dir, mlflow_run_id=run_id,
            test_metrics=test_metrics_of_run(run_id),
        )
    scenes = sorted((data / "composites").glob("s2l2a_*.tif"))
    plots = data / "plots.geojson"
    console.print(f"Serving {model_dir} with bentoml on 127.0.0.1; classifying "
                  f"{', '.join(s.name for s in scenes)} over HTTP")
    served = serve_and_classify(scenes, out_dir, model_dir, plots)
    summary = served["summary"]
    table = Table(title=f"Classes of {scenes[-1].name} (served by {model_dir})")
    for col in ("class", "pixels", "hectares"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, ha in summary["hectares"].items():
        table.add_row(name, f"{summary['class_pixels'][name]:,}", f"{ha:,.2f}")
    console.print(table)
    console.print(f"Class maps (Cloud Optimized GeoTIFF): {', '.join(map(str, served['maps']))}")

    # The baseline on the model's maps (the service's answer), written as reports, and
    # compared plot by plot with the generator's truth.
    schema = load_classes()
    model_ref, model_cur = served["maps"]
    report, maps, zones = build_report(model_ref, model_cur, schema, plots,
                                       lineage=served["baseline"]["lineage"])
    written = write_report(report, maps, zones, schema, out_dir / "baseline")
    truth_ref, truth_cur = sorted((data / "labels").glob("labels_*.tif"))
    truth, _, _ = build_report(truth_ref, truth_cur, schema, plots)
    land = report["landscape"]
    base = Table(title="Deforestation baseline since the reference date (model maps)")
    base.add_column("quantity")
    base.add_column("model ha", justify="right")
    base.add_column("truth ha", justify="right")
    base.add_row("forest at reference", f"{land['forest_ref_ha']:,.1f}",
                 f"{truth['landscape']['forest_ref_ha']:,.1f}")
    for driver, ha in land["forest_loss_by_driver_ha"].items():
        base.add_row(f"forest → {driver}", f"{ha:,.1f}",
                     f"{truth['landscape']['forest_loss_by_driver_ha'][driver]:,.1f}")
    console.print(base)
    errors = [abs(m["forest_loss_ha"] - t["forest_loss_ha"])
              for m, t in zip(report["zones"], truth["zones"], strict=True)]
    console.print(
        f"Plot verdicts (model): {report['verdicts']}; truth: {truth['verdicts']}; "
        f"per-plot forest-loss error: mean {np.mean(errors):.2f} ha, max "
        f"{np.max(errors):.2f} ha")
    for line in against_truth(report, truth):
        console.print(line)
    console.print("Reports: " + ", ".join(str(p) for p in written))
