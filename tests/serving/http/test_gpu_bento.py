"""The GPU Bento builds here (its GPU run needs a GPU machine), and says what it needs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from serving.http.bento import CUDA_VERSION, GPU_RUNTIME, gpu_bentofile, locked_requirements
from tests.model_factory import write_local_model
from tests.service_helpers import REPO

pytestmark = [pytest.mark.slow]


def test_gpu_bentofile_swaps_the_runtime_and_asks_for_cuda() -> None:
    spec = gpu_bentofile()
    packages = spec["python"]["packages"]
    assert GPU_RUNTIME in packages and not any(
        p.split("==")[0] == "onnxruntime" for p in packages)
    assert spec["docker"]["cuda_version"] == CUDA_VERSION
    envs = {e["name"]: e["value"] for e in spec["envs"]}
    assert envs["CACAOMAP_PROVIDERS"] == "cuda" and envs["CACAOMAP_GPUS"] == "1"
    assert envs["CACAOMAP_MODEL"] == "bento:cacaomap:latest"


def test_cacaomap_bento_gpu_builds_a_cuda_bento(tmp_path: Path) -> None:
    model = write_local_model(tmp_path / "model" / "v1")
    env = os.environ | {"BENTOML_HOME": str(tmp_path / "home"),
                        "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("CACAOMAP_GPUS", None)
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "cacaomap"), "service", "bento", "--model",
                           str(model), "--gpu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "built GPU Bento cacaomap:" in proc.stdout
    (bento_yaml,) = (tmp_path / "home" / "bentos" / "cacaomap").glob("*/bento.yaml")
    info = yaml.safe_load(bento_yaml.read_text())
    (service,) = info["services"]
    assert service["config"]["resources"] == {"gpu": 1}
    assert info["docker"]["cuda_version"] == CUDA_VERSION
    assert info["docker"]["env"]["CACAOMAP_PROVIDERS"] == "cuda"
    folder = bento_yaml.parent
    requirements = (folder / "env" / "python" / "requirements.txt").read_text()
    assert GPU_RUNTIME in requirements.splitlines()
    assert "onnxruntime==" not in requirements
    # every other pin is the CPU Bento's, the tested one
    pins = {line.split()[0] for line in locked_requirements()} - {
        p for p in (line.split()[0] for line in locked_requirements())
        if p.startswith("onnxruntime==")}
    assert pins <= set(requirements.splitlines())
    dockerfile = (folder / "env" / "docker" / "Dockerfile").read_text()
    assert f"FROM nvidia/cuda:{CUDA_VERSION}-cudnn-runtime" in dockerfile
    assert (folder / "src" / "serving" / "http" / "service.py").is_file()
