"""The Bento: the model in BentoML's model store, and the service built around it.

:func:`save_model` copies an exported model folder (``model.onnx``, ``contract.json``,
``MODEL_CARD.md``) into the BentoML model store, where the Bento's ``CACAOMAP_MODEL``
(``bento:cacaomap:latest``) finds it. :func:`build_bento` builds the Bento from
``bentofile.yaml`` beside this module with the installed ``serving`` package as the build
context, so an installed package (no repository checkout) builds the same Bento as
``bentoml build`` at the repository root: ``serving/`` only, no torch.

``build_bento(gpu=True)`` (``cacaomap service bento --gpu``) builds the GPU Bento from the same
file: ``onnxruntime-gpu`` (CUDA 13 and cuDNN 9 as pip packages, its ``cuda`` and
``cudnn`` extras) in place of ``onnxruntime``, BentoML's CUDA base image
(:data:`CUDA_VERSION`; the image's CUDA variables let the NVIDIA container toolkit
mount the host's driver, which must support CUDA 13), ``resources={"gpu": 1}``, and
``CACAOMAP_PROVIDERS=cuda``, so the Bento refuses to start where CUDA cannot be used
instead of running on the CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

import serving
from serving.inference.contract import (
    CARD_FILE,
    CONTRACT_FILE,
    ONNX_FILE,
    ModelContract,
    load_model_dir,
)

#: The Bento's build file (the repository root's ``bentofile.yaml`` links to it).
BENTOFILE = Path(__file__).with_name("bentofile.yaml")
#: Store name of the model the Bento serves (``models`` and ``CACAOMAP_MODEL`` in the
#: bentofile: ``cacaomap:latest``).
BENTO_MODEL = "cacaomap"
#: The GPU Bento's ONNX Runtime (the ``gpu`` extra of pyproject.toml).
GPU_RUNTIME = "onnxruntime-gpu[cuda,cudnn]==1.31.1"
#: BentoML 1.4's newest CUDA base image (nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04).
CUDA_VERSION = "12.8.1"


def save_model(model_dir: Path, contract: ModelContract | None = None,
               labels: dict[str, str] | None = None,
               metadata: dict[str, Any] | None = None, name: str | None = None) -> str:
    """Copy a checked model folder into the BentoML model store as ``<name>:<tag>``.

    Args:
        model_dir: An exported model folder.
        contract: Its contract (default: loaded and cross-checked from the folder).
        labels: BentoML labels (default: the contract's version).
        metadata: BentoML metadata (the ONNX sha256 is always added).
        name: Store name (default: the contract's model name).

    Returns:
        The store tag, e.g. ``cacaomap:abc123``.
    """
    if contract is None:
        contract = load_model_dir(model_dir)[1]
    import bentoml

    with bentoml.models.create(
        name or contract.name,
        labels=labels or {"version": contract.version},
        metadata={"onnx_sha256": contract.onnx_sha256, **(metadata or {})},
    ) as bento_model:
        for name in (ONNX_FILE, CONTRACT_FILE, CARD_FILE):
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, Path(bento_model.path) / name)
    return str(bento_model.tag)


def locked_requirements(bentofile: Path = BENTOFILE) -> list[str]:
    """The CPU Bento's requirement lines (exact pins), from its requirements file."""
    spec: dict[str, Any] = yaml.safe_load(bentofile.read_text())
    path = Path(serving.__file__).resolve().parent.parent / spec["python"]["requirements_txt"]
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def gpu_bentofile(bentofile: Path = BENTOFILE) -> dict[str, Any]:
    """The GPU Bento's build options: the CPU bentofile with the changes above.

    Its packages are the CPU Bento's pins with onnxruntime-gpu for onnxruntime (whose
    CUDA wheels are resolved in the image).
    """
    spec: dict[str, Any] = yaml.safe_load(bentofile.read_text())
    pins = [line.split()[0] for line in locked_requirements(bentofile)]
    packages = [GPU_RUNTIME if p.split("==")[0].strip() == "onnxruntime" else p for p in pins]
    if GPU_RUNTIME not in packages:
        raise ValueError(f"{bentofile} lists no onnxruntime to replace")
    spec["python"] = {"packages": packages, "lock_packages": False}
    spec["docker"] = {**spec.get("docker", {}), "distro": "debian",
                      "cuda_version": CUDA_VERSION}
    spec["labels"] = {**spec.get("labels", {}), "accelerator": "nvidia-gpu"}
    spec["envs"] = [e for e in spec.get("envs", [])
                    if e["name"] not in ("CACAOMAP_PROVIDERS", "CACAOMAP_GPUS")] + [
        {"name": "CACAOMAP_PROVIDERS", "value": "cuda"},
        {"name": "CACAOMAP_GPUS", "value": "1"}]
    return spec


def build_bento(model_dir: Path | None = None, gpu: bool = False) -> str:
    """Build the Bento (optionally saving ``model_dir`` to the store first).

    Args:
        model_dir: A model folder to save into the BentoML model store first.
        gpu: Build the GPU Bento (see the module docstring).

    Returns:
        The Bento's tag, e.g. ``cacaomap:xyz``; ``bentoml serve <tag>`` serves it.
    """
    import bentoml

    if model_dir is not None:
        save_model(model_dir, name=BENTO_MODEL)
    build_ctx = Path(serving.__file__).resolve().parent.parent
    if not gpu:
        bento = bentoml.bentos.build_bentofile(str(BENTOFILE), build_ctx=str(build_ctx))
        return str(bento.tag)
    # The service reads CACAOMAP_GPUS at import, which the build does: resources=gpu 1.
    # The variable is set for this build only.
    previous = os.environ.get("CACAOMAP_GPUS")
    os.environ["CACAOMAP_GPUS"] = "1"
    try:
        from serving import settings

        settings.current.cache_clear()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bentofile.gpu.yaml"
            path.write_text(yaml.safe_dump(gpu_bentofile(), sort_keys=False))
            bento = bentoml.bentos.build_bentofile(str(path), build_ctx=str(build_ctx))
    finally:
        if previous is None:
            os.environ.pop("CACAOMAP_GPUS", None)
        else:
            os.environ["CACAOMAP_GPUS"] = previous
        settings.current.cache_clear()
    return str(bento.tag)
