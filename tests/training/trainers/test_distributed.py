"""Distributed training: Lightning DDP with 2 CPU processes (gloo), logged once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torchgeo.samplers import GridGeoSampler

from tests.service_helpers import REPO
from training.data.datamodule import LandCoverDataModule

pytestmark = pytest.mark.slow


def test_ddp_two_processes_log_once(landscape: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, str(Path(sys.executable).parent / "cacaomap"), "train", "fit",
           "--config", "tests/conf/tiny.yaml",
           "--data.init_args.images", str(landscape / "images"),
           "--data.init_args.labels", str(landscape / "labels"),
           "--trainer.default_root_dir", str(tmp_path / "runs"),
           "--trainer.logger.init_args.artifact_location", (tmp_path / "art").as_uri(),
           "--trainer.strategy", "ddp", "--trainer.devices", "2",
           "--trainer.accelerator", "cpu"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).count("Test metrics per class") == 1
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("cacaomap-test")
                                 .experiment_id])
    assert run.info.status == "FINISHED"
    assert "test_IoU_macro" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "test_IoU_macro")) == 1
    ckpts = sorted(p.name for p in (tmp_path / "runs").rglob("*.ckpt"))
    assert len([c for c in ckpts if c.startswith("epoch")]) == 1 and "last.ckpt" in ckpts
    last = next((tmp_path / "runs").rglob("last.ckpt"))
    # 16 patches per epoch, batch 4, 2 ranks: each rank ran 2 steps, not 4.
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2


def test_samplers_split_across_ranks_without_duplicates(landscape: Path) -> None:
    dm = LandCoverDataModule(images=str(landscape / "images"),
                             labels=str(landscape / "labels"), block_size=64)
    dm.setup("test")
    sampler = GridGeoSampler(dm.test_dataset, 32, 32)
    def key(q: tuple) -> tuple:
        return (q[0].start, q[0].stop, q[1].start, q[1].stop, q[2].start)

    every = [key(q) for q in sampler]
    seen = []
    for rank in range(2):
        wrapped = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank,
                                            shuffle=False)
        seen.append([key(q) for q in wrapped])
    assert set(seen[0]) | set(seen[1]) == set(every)
    overlap = set(seen[0]) & set(seen[1])
    assert len(overlap) <= len(every) % 2  # only DistributedSampler's padding repeats
