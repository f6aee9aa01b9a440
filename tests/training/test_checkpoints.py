"""A checkpoint that would run code when unpickled is refused, and its code never runs.

Anyone who can log an artifact to the team's MLflow server could plant such a file for
``cacaomap model export --run-id``; before, export, the trainer's ``weights:`` and the
tracking's run lookup all unpickled with ``weights_only=False``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.service_helpers import REPO
from training.checkpoints import CheckpointError, load_checkpoint_dict


class Planted:
    """Unpickling this writes a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture()
def evil(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {},
                "LandCoverDataModule": {"statistics": "{}"}, "payload": Planted(marker)},
               path)
    return path, marker


def test_every_load_path_refuses_it_before_any_code_runs(evil: tuple[Path, Path]) -> None:
    from training.export.exporter import load_checkpoint
    from training.tracking import checkpoint_run_id

    path, marker = evil
    for load in (load_checkpoint_dict, load_checkpoint, checkpoint_run_id):
        with pytest.raises(CheckpointError, match="holds objects other than tensors"):
            load(path)
    assert not marker.exists()


def test_the_trainers_local_weights_refuse_it(evil: tuple[Path, Path]) -> None:
    from training.trainers.segmentation import LandCoverSegmentationTask

    path, marker = evil
    with pytest.raises(CheckpointError):
        LandCoverSegmentationTask(in_channels=3, weights=str(path))
    assert not marker.exists()


def test_export_ends_with_one_line_and_runs_nothing(evil: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    path, marker = evil
    run = subprocess.run([sys.executable, "-m", "cacaomap", "model", "export",
                          "--checkpoint", str(path), "--models-dir", str(tmp_path / "m"),
                          "--no-register"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith(
        "cacaomap model export: ") and "Traceback" not in run.stderr
    assert not marker.exists() and not (tmp_path / "m" / "cacaomap").exists()


def test_a_real_checkpoint_still_loads(trained: dict[str, str]) -> None:
    state = load_checkpoint_dict(trained["ckpt"])
    assert "state_dict" in state and "LandCoverDataModule" in state
