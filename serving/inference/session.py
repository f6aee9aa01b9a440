"""ONNX Runtime sessions: TensorRT → CUDA → CPU, whichever is installed and works.

CUDA and TensorRT paths follow ONNX Runtime's documented provider options; they are
untested here (no GPU on the project's machines) and fall back to the CPU provider.
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


def create_session(
    onnx_path: str | Path,
    providers: Sequence[str] | None = None,
    intra_op_threads: int | None = None,
    fp16: bool = False,
) -> ort.InferenceSession:
    """An inference session on the best available provider, checked after creation.

    Args:
        onnx_path: The model file.
        providers: Provider names in preference order (default: the setting
            ``CACAOMAP_PROVIDERS``, else TensorRT, CUDA, CPU).
        intra_op_threads: Threads per session (default: the setting
            ``CACAOMAP_ORT_THREADS``, else ORT's choice).
        fp16: Let TensorRT build fp16 engines.

    Returns:
        The session; ``session.get_providers()[0]`` is the provider in use.
    """
    settings = current()
    if providers is None and settings.providers:
        providers = settings.providers
    names = choose_providers(providers)
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
