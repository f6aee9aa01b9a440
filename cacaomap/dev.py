"""``cacaomap dev``: the demo's second half, benchmarks and the MLflow UI command."""

from __future__ import annotations

from pathlib import Path


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


#: The Bento's requirements: the serving floor's closure, pinned as tested.
SERVE_LOCK = Path("serving/http/requirements-serve.lock")


def serve_lock(out: Path = SERVE_LOCK, lock: Path = Path("requirements.lock")) -> None:
    """Write the Bento's requirements: the ``serve`` extra resolved within the lock.

    pip resolves the serving floor's dependencies (``pyproject.toml``: the project's own
    and the ``service`` extra's, with ONNX Runtime's CPU build) constrained by
    ``requirements.lock``, the environment the tests run in: the Bento installs exactly
    the tested versions. Pins without hashes: BentoML appends its own unhashed
    ``bentoml`` pin to a Bento's requirements, and pip's hash mode refuses a file with
    one line unhashed.

    Args:
        out: The Bento's requirements file.
        lock: The project's lock (``pip freeze`` of the tested environment).

    Writes:
        OUT: one ``name==version`` line per package, sorted.

    Examples:
        cacaomap dev serve-lock
    """
    import json
    import subprocess
    import sys
    import tempfile
    import tomllib

    from cacaomap.grammar import CommandError
    from serving.files import write_bytes_atomic

    if not lock.is_file():
        raise CommandError(f"no lock file at {lock}")
    if not Path("pyproject.toml").is_file():
        raise CommandError("no pyproject.toml here: run it at the repository's root")
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["service"],
              *(r for r in extras["serve"] if not r.startswith("cacaomap"))]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run",
                              "--quiet", "--ignore-installed", "--report", str(report),
                              "-c", str(lock), *wanted], capture_output=True, text=True)
        if run.returncode != 0:
            why = (run.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise CommandError(f"pip cannot resolve the serving floor within {lock}: {why}")
        installs = json.loads(report.read_text())["install"]
    lines = sorted(f"{i['metadata']['name'].lower()}=={i['metadata']['version']}"
                   for i in installs)
    header = ("# The Bento's requirements (cacaomap dev serve-lock): the serving floor "
              "resolved within requirements.lock.\n# Do not edit: run the command.\n")
    write_bytes_atomic(out, (header + "\n".join(lines) + "\n").encode())
    print(f"wrote {out}: {len(lines)} packages")
