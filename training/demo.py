"""The serving half of ``make demo``: export the demo run, serve it, classify over HTTP.

Starts a real ``bentoml serve`` on 127.0.0.1, waits for ``/readyz``, posts the
monitoring-date scene to ``/classify_scene`` (the COG class map) and
``/classify_scene_summary`` (hectares per class), prints them, and stops the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
from rich.console import Console
from rich.table import Table

from training.export import checkpoint_from_run, export_model, test_metrics_of_run
from training.tracking import resolve_tracking_uri

READY_TIMEOUT_S = 180


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bentoml serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"bentoml serve was not ready after {READY_TIMEOUT_S} s")


def serve_and_classify(
    scene: Path, out: Path, model_dir: Path, port: int | None = None
) -> dict[str, object]:
    """Serve ``model_dir`` on loopback, classify ``scene`` over HTTP into ``out``."""
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    env = os.environ | {"CACAOMAP_MODEL": str(model_dir), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:CacaoMap",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, proc)
        with open(scene, "rb") as f:
            r = httpx.post(f"{url}/classify_scene", timeout=600,
                           files={"scene": (scene.name, f, "image/tiff")})
        r.raise_for_status()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(r.content)
        with open(scene, "rb") as f:
            r = httpx.post(f"{url}/classify_scene_summary", timeout=600,
                           files={"scene": (scene.name, f, "image/tiff")})
        r.raise_for_status()
        return dict(r.json())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_demo_serving(
    experiment: str = "cacaomap-demo",
    scene: Path = Path("datasets/synthetic/data/demo/images/s2l2a_20240820.tif"),
    out: Path = Path("experiments/demo-output/classes_20240820.tif"),
    models_dir: Path = Path("models"),
) -> None:
    """Export the newest demo run, serve it, classify the monitoring-date scene."""
    console = Console()
    run_id = latest_run(experiment)
    console.print(f"Exporting run {run_id} (parity check, MLflow registry, BentoML store)")
    model_dir = export_model(
        checkpoint_from_run(run_id), models_dir=models_dir, mlflow_run_id=run_id,
        test_metrics=test_metrics_of_run(run_id),
    )
    console.print(f"Serving {model_dir} with bentoml on 127.0.0.1, classifying {scene}")
    summary = serve_and_classify(scene, out, model_dir)
    table = Table(title=f"Classes of {scene.name} (served by {model_dir})")
    table.add_column("class")
    table.add_column("pixels", justify="right")
    table.add_column("hectares", justify="right")
    hectares = summary["hectares"]
    pixels = summary["class_pixels"]
    assert isinstance(hectares, dict) and isinstance(pixels, dict)
    for name, ha in hectares.items():
        table.add_row(name, f"{pixels[name]:,}", f"{ha:,.2f}")
    console.print(table)
    console.print(f"Class map (Cloud Optimized GeoTIFF): {out}")
