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
from collections.abc import Iterator
from contextlib import contextmanager
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


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_model(
    model_dir: Path, log_path: Path | None = None, extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run ``bentoml serve`` for ``model_dir`` on 127.0.0.1 until the block exits.

    Yields the base URL once ``/readyz`` answers 200; stops the server afterwards.

    Raises:
        RuntimeError: If the server exits or is not ready in time (with its log tail).
    """
    url = f"http://127.0.0.1:{free_port()}"
    env = os.environ | {"CACAOMAP_MODEL": str(model_dir), "BENTOML_DO_NOT_TRACK": "true",
                        **(extra_env or {})}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "serving.service:CacaoMap",
         "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]],
        env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
    )

    def tail() -> str:
        return log_path.read_text()[-3000:] if log_path else ""

    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {proc.returncode}\n{tail()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve not ready in {READY_TIMEOUT_S} s\n{tail()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log_path:
            log.close()  # type: ignore[union-attr]


def serve_and_classify(scene: Path, out: Path, model_dir: Path) -> dict[str, object]:
    """Serve ``model_dir`` on loopback, classify ``scene`` over HTTP into ``out``."""
    with served_model(model_dir) as url:
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
