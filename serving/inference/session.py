"""ONNX Runtime sessions: TensorRT → CUDA → CPU, whichever is installed and works.

With no ``CACAOMAP_PROVIDERS`` the best installed provider is used and a failing GPU
provider falls back to the CPU (logged). With ``CACAOMAP_PROVIDERS`` given, its first
provider is *required*: :func:`create_session` raises :class:`ProviderError` when this
ONNX Runtime lacks it or it cannot start (no GPU, no driver), naming what is missing,
instead of running on the CPU. CUDA and TensorRT paths follow ONNX Runtime's documented
provider options (``onnxruntime-gpu``, the ``gpu`` extra, whose CUDA and cuDNN come as
pip packages loaded by ``onnxruntime.preload_dlls``); they are untested on a GPU here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from serving.settings import current

log = logging.getLogger(__name__)


class ProviderError(RuntimeError):
    """A required execution provider that cannot be used here."""

#: Preference order of execution providers.
PROVIDER_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


def provider_options(name: str, fp16: bool = False, cache_dir: str | None = None
                     ) -> dict[str, Any]:
    """Documented options for a provider (TensorRT engine cache, fp16; CUDA arena)."""
    if name == "TensorrtExecutionProvider":
        opts: dict[str, Any] = {"trt_fp16_enable": fp16}
        if cache_dir:
            opts |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache_dir}
        return opts
    if name == "CUDAExecutionProvider":
        return {"arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search":
                "HEURISTIC"}
    return {}


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The preferred providers that this ONNX Runtime build has, CPU always last."""
    available = set(ort.get_available_providers())
    wanted = list(requested) if requested else list(PROVIDER_ORDER)
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


def required_provider(providers: Sequence[str] | None = None) -> str | None:
    """The provider a session must run on: the first of ``CACAOMAP_PROVIDERS`` (or None).

    Raises:
        ProviderError: When this ONNX Runtime build does not have it.
    """
    requested = list(providers) if providers is not None else list(current().providers)
    if not requested:
        return None
    first = requested[0]
    available = ort.get_available_providers()
    if first not in available:
        hint = (" (install the gpu extra, onnxruntime-gpu, in place of onnxruntime, on a "
                "machine with an NVIDIA driver)" if first != "CPUExecutionProvider" else "")
        raise ProviderError(
            f"CACAOMAP_PROVIDERS asks for {first}, which this ONNX Runtime "
            f"({ort.__version__}, {ort.get_device()}) does not have: it has "
            f"{', '.join(available)}{hint}")
    return first


def _load_gpu_libraries(names: Sequence[str]) -> None:
    """Load the CUDA/cuDNN libraries that came as pip packages (onnxruntime >= 1.21)."""
    if any(n != "CPUExecutionProvider" for n in names) and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except (OSError, RuntimeError) as err:  # the system's libraries may still do
            log.warning("onnxruntime.preload_dlls failed: %s", err)


def create_session(
    onnx_path: str | Path,
    providers: Sequence[str] | None = None,
    intra_op_threads: int | None = None,
    fp16: bool = False,
) -> ort.InferenceSession:
    """An inference session on the best available (or the required) provider.

    Args:
        onnx_path: The model file.
        providers: Provider names in preference order (default: the setting
            ``CACAOMAP_PROVIDERS``, whose first is then required; else TensorRT,
            CUDA, CPU, whichever is installed).
        intra_op_threads: Threads per session (default: the setting
            ``CACAOMAP_ORT_THREADS``, else ORT's choice).
        fp16: Let TensorRT build fp16 engines.

    Returns:
        The session; ``session.get_providers()[0]`` is the provider in use.

    Raises:
        ProviderError: A required provider is missing or fell back to another.
    """
    settings = current()
    required = None
    if providers is None and settings.providers:
        providers = settings.providers
        required = required_provider(providers)
    names = choose_providers(providers)
    _load_gpu_libraries(names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = intra_op_threads or settings.ort_threads
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(onnx_path), sess_options=options, providers=names,
        provider_options=[provider_options(n, fp16) for n in names],
    )
    active = session.get_providers()
    if required is not None and active[0] != required:
        raise ProviderError(f"CACAOMAP_PROVIDERS asks for {required}, but ONNX Runtime "
                            f"could not start it and fell back to {active[0]} (is a GPU "
                            "visible, with a driver for this CUDA?)")
    if active[0] != names[0]:
        log.warning("requested %s but ONNX Runtime runs on %s", names[0], active[0])
    log.info("ONNX Runtime session on %s", active[0])
    return session


def scene_ort_threads() -> int:
    """Default intra-op threads of the service's scene session: half the cores (>= 1).

    The service runs scenes beside tile requests; a scene session as wide as the
    machine would take every core from the tiles.
    """
    return max(1, (os.cpu_count() or 2) // 2)
