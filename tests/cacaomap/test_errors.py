"""Every ``cacaomap`` command given a bad input: one line naming it, exit 1, no traceback.

The cases are generated from the command table (:data:`cacaomap.main.COMMANDS`): a new
command without a case here fails :func:`test_every_command_has_a_bad_input_case`. Each
case must get past the argument parser (its error must come from the command's own
checks, so a renamed flag cannot turn the case into a parse error that passes), and a
second table checks that argument errors name the flag.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cacaomap.main import COMMANDS
from tests.service_helpers import REPO

pytestmark = pytest.mark.slow


def bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """A user error for each command, past its parser (a missing file, a file that lies)."""
    missing = str(tmp / "missing.tif")
    not_a_tif = tmp / "scene.tif"
    not_a_tif.write_text("this is not a GeoTIFF")
    plots = tmp / "plots.geojson"
    plots.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    config = tmp / "al.yaml"
    config.write_text(f"images: {missing}\ntruth: {missing}\n")
    return {
        "imagery synth": ["--size", "-5", "--out", str(tmp / "s")],
        "imagery array-chips": [str(tmp / "missing.npz"), str(tmp / "chips")],
        "imagery composite": ["--stac", str(tmp / "none.json"), "--period",
                              "2020-01-01/2020-12-31", "--out", str(tmp / "c.tif")],
        "imagery stack-radar": ["--optical", str(not_a_tif), "--radar", str(not_a_tif),
                                "--out", str(tmp / "s.tif")],
        "model export": ["--checkpoint", str(tmp / "none.ckpt")],
        "model evaluate": ["--model", str(tmp / "nomodel"), "--images", missing,
                           "--labels", missing],
        "model crossval": ["--images", str(tmp / "no-chips"), "--labels", str(tmp)],
        "model active-learning": ["--config", str(config)],
        "maps classify": [missing],
        "maps baseline": ["--reference", missing, "--current", missing],
        "maps sample-points": [str(not_a_tif), str(tmp / "o.geojson")],
        "labels suggest": [missing, str(tmp / "points.geojson")],
        "store build": ["--region", str(plots), "--reference-period",
                        "2020-01-01/2020-12-31", "--current-period", "2024-01-01/2024-12-31",
                        "--stac", str(tmp / "none.json"), "--out", str(tmp / "store")],
        "plots check": [str(plots), "--store", str(tmp)],
        "service run": ["--model", str(tmp / "nomodel"), "--port", "1"],
        "service bento": ["--model", str(tmp / "nomodel")],
        "dev demo": ["--experiment", "no-such-experiment"],
        "dev bench": ["--experiment", "no-such-experiment", "--redo", "nothing"],
        "dev serve-lock": ["--lock", str(tmp / "missing.lock"), "--out", str(tmp / "x.lock")],
        # mlflow-ui takes no input: its only user error is an argument one (below)
    }


#: Commands that read no input of the user's, so have no user error but a bad flag.
NO_INPUT = {"dev mlflow-ui"}

#: A bad argument per kind of parse error: the line must name the flag.
BAD_ARGUMENTS: dict[str, tuple[list[str], str]] = {
    "missing positional": (["plots", "check"], "plots"),
    "unknown flag": (["maps", "classify", "x.tif", "--no-such-flag", "1"], "--no-such-flag"),
    "bad choice": (["imagery", "composite", "--period", "a/b", "--out", "c.tif",
                    "--mask", "clouds"], "--mask"),
    "bad number": (["imagery", "synth", "--size", "big"], "--size"),
    "missing required flag": (["store", "build", "--out", "s"], "--region"),
    "bad pair": (["model", "evaluate", "--label-map", "1:2"], "--label-map"),
    "flag of a command without flags": (["dev", "mlflow-ui", "--nothing"], "--nothing"),
    "no such command": (["maps", "paint"], "paint"),
}


#: A logging record's line (``2026/12/06 11:44:45 INFO mlflow.store...``).
LOG_RECORD = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING) ")


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """The command in a process; log records (MLflow's set-up of a new store) dropped."""
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
                        "BENTOML_HOME": str(tmp / "bentoml")}
    run = subprocess.run([sys.executable, "-m", "cacaomap", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env=env)
    run.stderr = "\n".join(line for line in run.stderr.splitlines()
                           if not LOG_RECORD.match(line))
    return run


def test_every_command_has_a_bad_input_case(tmp_path: Path) -> None:
    cases = set(bad_inputs(tmp_path)) | NO_INPUT
    assert cases == {c.path for c in COMMANDS}


@pytest.mark.parametrize("command", sorted(c.path for c in COMMANDS if c.path not in NO_INPUT))
def test_a_user_error_is_one_line_and_exit_1(command: str, tmp_path: Path) -> None:
    run = _run([*command.split(), *bad_inputs(tmp_path)[command]], tmp_path)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 1, (run.returncode, run.stdout[-1000:], run.stderr[-1000:])
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr[-1500:]
    assert lines[0].startswith(f"cacaomap {command}: "), lines
    # the case got past the parser: its message is the command's, not argparse's
    assert "see cacaomap" not in lines[0], lines


def test_a_training_error_ends_with_one_line(tmp_path: Path) -> None:
    run = _run(["train", "fit", "--config", str(REPO / "tests" / "conf" / "tiny.yaml"),
                "--data.init_args.images", str(tmp_path / "no-images"),
                "--trainer.default_root_dir", str(tmp_path / "runs")], tmp_path)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("cacaomap train fit: ")


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_an_argument_error_names_the_flag_and_exits_1(case: str, tmp_path: Path) -> None:
    args, named = BAD_ARGUMENTS[case]
    run = _run(args, tmp_path)
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    command = " ".join(args[:2])
    assert lines[0].startswith(f"cacaomap {command}: "), lines
    assert named in lines[0], lines
    assert f"(see cacaomap {command} --help)" in lines[0] or case == "no such command"
