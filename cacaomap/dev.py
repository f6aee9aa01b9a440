"""``cacaomap dev``: the demo's second half, benchmarks and the MLflow UI command."""

from __future__ import annotations


def demo(experiment: str = "cacaomap-demo") -> None:
    """Export the newest demo run, build its store, serve it and check the demo's plots.

    The second half of ``make demo``: exports the run's best checkpoint, scores its
    uncertainty on the test blocks, builds the landscape's baseline store, starts
    ``bentoml serve`` on 127.0.0.1, classifies the 2024 composite over HTTP, sends the
    plots to ``POST /plots`` and prints the verdicts against the truth.

    Args:
        experiment: MLflow experiment whose newest finished run is exported.

    Writes:
        models/cacaomap/v<N>/ (the exported model), the demo's store under
        datasets/synthetic/data/demo/store/, and the reports under
        experiments/demo-output/.

    Examples:
        cacaomap dev demo
    """
    from training.demo import run_demo_serving

    run_demo_serving(experiment)


def bench(scene_size: int = 10980, service_seconds: float = 10.0,
          experiment: str = "cacaomap-demo", options_only: bool = False,
          redo: list[str] | None = None) -> None:
    """Measure model, scene, service, composite and plot-check throughput.

    Uses the newest demo run and its exported model (``make demo``); sections already
    measured today are reused unless named in ``--redo``.

    Args:
        scene_size: Side of the generated scene in pixels (a Sentinel-2 tile: 10980).
        service_seconds: How long each client-count level of the service runs.
        experiment: MLflow experiment whose newest run (and exported model) is measured.
        options_only: Only (re)measure the ONNX Runtime option table into the newest
            benchmark JSON.
        redo: Sections to measure again although today's JSON has them (``scene
            service``); the others are reused.

    Writes:
        experiments/benchmarks/<date>.json (raw figures) and docs/performance.md (the
        tables, with the machine's CPU and flags).

    Examples:
        cacaomap dev bench
        cacaomap dev bench --scene-size 4096 --redo scene service
    """
    from training.bench.runner import add_session_options, run_bench

    if options_only:
        add_session_options()
        return
    run_bench(experiment=experiment, scene_size=scene_size, service_seconds=service_seconds,
              redo=tuple(redo or ()))


def mlflow_ui_command() -> str:
    """The command that opens the MLflow UI on this project's runs."""
    import os

    from training.tracking import DEFAULT_TRACKING_URI

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    return f".venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def mlflow_ui() -> None:
    """Print the command that opens the MLflow UI on the project's runs.

    Writes:
        Nothing; it prints the command (the UI is a server of its own).

    Examples:
        cacaomap dev mlflow-ui
    """
    print(f"Open the MLflow UI on the runs:\n  {mlflow_ui_command()}")
