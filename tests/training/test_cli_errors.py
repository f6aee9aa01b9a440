"""Every ``cacaomap`` subcommand given a bad input: one line naming it, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service_helpers import REPO

pytestmark = pytest.mark.slow


def bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """A user error for each subcommand (a missing file, a file that is not what it says)."""
    missing = str(tmp / "missing.tif")
    not_a_tif = tmp / "scene.tif"
    not_a_tif.write_text("this is not a GeoTIFF")
    plots = tmp / "plots.geojson"
    plots.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    return {
        "synth": ["synth", "--size", "-5", "--out", str(tmp / "s")],
        "array-chips": ["array-chips", str(tmp / "missing.npz"), str(tmp / "chips")],
        "composite": ["composite", "--stac", str(tmp / "none.json"), "--period",
                      "2020-01-01/2020-12-31", "--out", str(tmp / "c.tif")],
        "export": ["export", "--checkpoint", str(tmp / "none.ckpt")],
        "classify": ["classify", missing],
        "classify bad file": ["classify", str(not_a_tif), "--model", str(tmp / "nomodel")],
        "evaluate": ["evaluate", "--model", str(tmp / "nomodel"), "--images", missing,
                     "--labels", missing],
        "bento": ["bento", "--model", str(tmp / "nomodel")],
        "baseline": ["baseline", "--reference", missing, "--current", missing],
        "sample-points": ["sample-points", str(not_a_tif), str(tmp / "o.geojson")],
        "store build": ["store", "build", "--region", str(plots), "--reference_period",
                        "2020-01-01/2020-12-31", "--current_period", "2024-01-01/2024-12-31",
                        "--stac", str(tmp / "none.json"), "--out", str(tmp / "store")],
        "plots check": ["plots", "check", str(plots), "--store", str(tmp)],
        "train": ["train", "fit", "--config", str(REPO / "tests" / "conf" / "tiny.yaml"),
                  "--data.init_args.images", str(tmp / "no-images"),
                  "--trainer.default_root_dir", str(tmp / "runs")],
    }


CASES = ["synth", "array-chips", "composite", "export", "classify", "classify bad file",
         "evaluate", "bento", "baseline", "sample-points", "store build", "plots check",
         "train"]


@pytest.mark.parametrize("case", CASES)
def test_a_user_error_is_one_line_and_a_non_zero_exit(case: str, tmp_path: Path) -> None:
    args = bad_inputs(tmp_path)[case]
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    run = subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env=env)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    if run.returncode == 2:  # the argument parser's own: usage, then its error
        assert "error:" in run.stderr, run.stderr[-1500:]
        return
    assert run.returncode == 1, (run.returncode, run.stdout[-1000:])
    lines = run.stderr.strip().splitlines()
    if case != "train":  # training logs its set-up to stderr before it fails
        assert len(lines) == 1, run.stderr[-1500:]
    assert lines[-1].startswith(("cacaomap ", "composite:", "store build:", "plots check:",
                                 "baseline:")), lines
