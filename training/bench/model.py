"""Model benchmarks: PyTorch eager vs ONNX Runtime (fp32, int8), FLOPs, the CPU's ceiling.

Every figure is measured in the same process and run, side by side: tiles/s and Mpx/s
by batch size and tile size, GFLOP per tile counted by ``torch.utils.flop_counter``, the
achieved GFLOP/s against this machine's measured fp32 matrix-multiply rate and against
its theoretical fp32 peak (derivation in :func:`theoretical_peak`).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.flop_counter import FlopCounterMode

from serving.inference.contract import ModelContract
from serving.inference.tiles import TileClassifier

#: Measure each configuration for at least this long (and 3 calls).
MIN_SECONDS = 3.0


def cpu_facts() -> dict[str, Any]:
    """CPU model, logical cores, flags that matter, nominal clock."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", text)
    flag_line = re.search(r"flags\s*:\s*(.+)", text)
    flags = set(flag_line.group(1).split()) if flag_line else set()
    nominal = re.search(r"@\s*([\d.]+)GHz", model.group(1)) if model else None
    mhz = re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)
    return {
        "model": model.group(1).strip() if model else "unknown",
        "cores": os.cpu_count() or 1,
        "avx512f": "avx512f" in flags, "avx512_vnni": "avx512_vnni" in flags,
        "avx2": "avx2" in flags, "fma": "fma" in flags,
        "nominal_ghz": float(nominal.group(1)) if nominal else None,
        "reported_mhz": float(mhz[0]) if mhz else None,
    }


def theoretical_peak(cpu: dict[str, Any], fma_units: int = 2) -> dict[str, Any]:
    """fp32 peak = cores x FMA units x lanes x 2 (multiply + add) x clock.

    Lanes: 16 fp32 with AVX-512, 8 with AVX2. FMA units per core: 2 on Xeon Scalable
    Gold/Platinum (1 on Silver/Bronze); /proc/cpuinfo does not say, so it is an
    assumption stated in the output. Clock: the nominal (base) clock in the model name,
    else the reported MHz. A "core" here is a logical CPU of this VM (may be a
    hyperthread: then the true peak is lower, and the ratio higher).
    """
    lanes = 16 if cpu["avx512f"] else 8 if cpu["avx2"] else 4
    ghz = cpu["nominal_ghz"] or (cpu["reported_mhz"] or 0) / 1000
    peak = cpu["cores"] * fma_units * lanes * 2 * ghz
    return {"gflops": peak, "cores": cpu["cores"], "fma_units_assumed": fma_units,
            "fp32_lanes": lanes, "ghz": ghz,
            "formula": "cores x FMA units x fp32 lanes x 2 x GHz"}


def matmul_gflops(n: int = 2048, seconds: float = MIN_SECONDS) -> float:
    """Measured fp32 matrix-multiply rate of this machine (torch, all threads)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 3:
        torch.mm(a, b)
        calls += 1
    return 2 * n**3 * calls / elapsed / 1e9


def gflop_per_tile(model: torch.nn.Module, bands: int, tile: int) -> float:
    """Forward-pass GFLOP for one tile (multiply-adds counted as 2)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, bands, tile, tile))
    return counter.get_total_flops() / 1e9


#: Pause before each measurement: OpenMP (torch) and ORT worker threads keep spinning
#: for a while after a run and would steal the cores from the next engine measured.
SETTLE_SECONDS = 1.0


def rate(fn: Callable[[], object], tiles: int, min_seconds: float = MIN_SECONDS
         ) -> float:
    """Tiles per second of calling ``fn`` (which handles ``tiles`` tiles)."""
    time.sleep(SETTLE_SECONDS)
    fn()  # warm-up: allocations, kernel selection
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_seconds or calls < 3:
        fn()
        calls += 1
    return tiles * calls / elapsed


def eager_classify(model: torch.nn.Module, contract: ModelContract
                   ) -> Callable[[NDArray[np.generic]], NDArray[np.uint8]]:
    """PyTorch eager doing what the serving path does: normalise, forward, argmax."""
    mean = torch.tensor(contract.mean, dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(contract.std, dtype=torch.float32)[None, :, None, None]

    def run(tiles: NDArray[np.generic]) -> NDArray[np.uint8]:
        with torch.inference_mode():
            x = (torch.from_numpy(tiles.astype(np.float32)) - mean) / std
            return model(x).argmax(1).to(torch.uint8).numpy()

    return run


def model_throughput(
    model: torch.nn.Module, engines: dict[str, TileClassifier], contract: ModelContract,
    tile_sizes: list[int], batch_sizes: list[int], min_seconds: float = MIN_SECONDS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """tiles/s of eager and each ORT engine, per tile size and batch size.

    Each engine is timed twice: the serving path (``<engine>``: normalise, session,
    argmax, the same work as eager) and the session alone on prepared input
    (``<engine>_session``: the model's own compute, for GFLOP/s).
    """
    rng = np.random.default_rng(0)
    eager = eager_classify(model, contract)
    rows = []
    for tile in tile_sizes:
        # Larger tiles: batches of at most as many pixels as 32 tiles of 256 px.
        for batch in [b for b in batch_sizes if b * tile * tile <= 32 * 256 * 256]:
            tiles = rng.normal(contract.mean, contract.std, (batch, tile, tile,
                                                             contract.num_bands))
            tiles = np.moveaxis(tiles, -1, 1).clip(1, 20000).astype(contract.input_dtype)
            row: dict[str, Any] = {"tile": tile, "batch": batch}
            row["eager_fp32"] = rate(functools.partial(eager, tiles), batch, min_seconds)
            prepared = ((tiles.astype(np.float32) - np.asarray(contract.mean, np.float32)[
                None, :, None, None]) / np.asarray(contract.std, np.float32)[
                None, :, None, None]).astype(np.float32)
            for name, classifier in engines.items():
                row[name] = rate(functools.partial(classifier.classify, tiles), batch,
                                 min_seconds)
                row[f"{name}_session"] = rate(functools.partial(
                    classifier.session.run, None, {contract.input_name: prepared}),
                    batch, min_seconds)
            rows.append(row)
            if progress:
                progress(f"tile {tile} batch {batch}: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in row.items() if k not in ("tile", "batch")))
    return rows


def tta_cost(model_dir: Path, tile: int | None = None, batch: int = 8,
             min_seconds: float = MIN_SECONDS) -> list[dict[str, Any]]:
    """tiles/s of the serving path under each test-time augmentation mode.

    The same tiles through :class:`TileClassifier` with ``tta`` ``none``, ``flips`` and
    ``d4``; ``ratio`` is each mode's rate over ``none``'s (the cost of ``CACAOMAP_TTA``).
    """
    from serving.inference.contract import load_model_dir
    from serving.inference.tta import RUNS

    onnx_path, contract = load_model_dir(model_dir)
    side = tile or contract.tile_size
    rng = np.random.default_rng(0)
    tiles = rng.normal(contract.mean, contract.std, (batch, side, side, contract.num_bands))
    tiles = np.moveaxis(tiles, -1, 1).clip(1, 20000).astype(contract.input_dtype)
    session = TileClassifier(onnx_path, contract, tta="none").session
    rates = {}
    for mode in RUNS:
        classifier = TileClassifier(onnx_path, contract, session=session,
                                    tta=mode)  # type: ignore[arg-type]
        rates[mode] = rate(functools.partial(classifier.classify, tiles), batch,
                           min_seconds)
    return [{"tta": mode, "runs": RUNS[mode], "tile": side, "batch": batch,
             "tiles_per_s": value, "ratio": value / rates["none"]}
            for mode, value in rates.items()]


def session_options(onnx_path: Path, contract: ModelContract, tile: int = 256,
                    batch: int = 8, min_seconds: float = MIN_SECONDS) -> list[dict[str, Any]]:
    """tiles/s of the serving path under each ORT option tried (before/after pairs).

    Graph optimisation levels and intra-op threads, and the serving path's own change:
    classes as the argmax of logits (now) instead of the argmax of softmax
    probabilities (before); the softmax changes no class and cost ~30% of the time.
    """
    import onnxruntime as ort

    from serving.inference.session import create_session

    tiles = np.random.default_rng(0).normal(contract.mean, contract.std, (
        batch, tile, tile, contract.num_bands))
    tiles = np.moveaxis(tiles, -1, 1).clip(1, 20000).astype(contract.input_dtype)
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    rows = []
    for name, level in levels.items():
        for threads in (1, os.cpu_count() or 1):
            options = ort.SessionOptions()
            options.graph_optimization_level = level
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(onnx_path), options,
                                           providers=["CPUExecutionProvider"])
            classifier = TileClassifier(onnx_path, contract, session)
            rows.append({"option": f"graph {name}, {threads} thread(s)",
                         "tiles_per_s": rate(functools.partial(classifier.classify, tiles),
                                             batch, min_seconds)})
    classifier = TileClassifier(onnx_path, contract, create_session(onnx_path))

    def softmax_argmax(t: NDArray[np.generic]) -> NDArray[np.intp]:
        return classifier.probabilities(t).argmax(axis=1)

    rows.append({"option": "serving path before: argmax of softmax",
                 "tiles_per_s": rate(functools.partial(softmax_argmax, tiles), batch,
                                     min_seconds)})
    rows.append({"option": "serving path now: argmax of logits",
                 "tiles_per_s": rate(functools.partial(classifier.classify, tiles), batch,
                                     min_seconds)})
    return rows
