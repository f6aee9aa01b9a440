"""Benchmark: tile and plot throughput before and after the separate bounded queues.

The same model and the same store are served by two trees of this repository, one at
a revision before the queues (``BEFORE``: plots ran in the single scene thread, no
queue bounds) and this one, each a real ``bentoml serve`` on loopback from the same
virtual environment. Tiles: N closed-loop clients for a fixed time (requests/s). Plots:
one ``POST /plots`` of a few thousand plots against the store, timed (plots/s). The
two trees alternate, round after round, so that drift of the machine falls on both;
the answer is each tree's best round and the ratios after/before.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from serving.http.local_server import served_model
from serving.http.tile_payload import encode_tiles
from training.bench.plot_checks import write_plots, write_stores
from training.bench.service import _clients

REPO = Path(__file__).resolve().parents[2]
#: The last revision before the separate bounded queues (faaadb9).
BEFORE = "22aa49f"


def export_tree(revision: str, out: Path) -> Path:
    """The repository's files at ``revision``, unpacked under ``out`` (once).

    Raises:
        RuntimeError: Not a git checkout, or no such revision.
    """
    if (out / "serving" / "http" / "service.py").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    archive = out.with_suffix(".tar")
    made = subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), revision],
                          capture_output=True, text=True)
    if made.returncode:
        raise RuntimeError(f"cannot export {revision}: {made.stderr.strip()}")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    archive.unlink()
    return out


def _serve_and_measure(tree: Path, model_dir: Path, store: Path, tile_body: bytes,
                       plots_body: bytes, clients: int, seconds: float, log: Path
                       ) -> dict[str, Any]:
    env = {"CACAOMAP_STORE": str(store), "CACAOMAP_MAX_IN_FLIGHT": "256",
           "BENTOML_HOME": str(log.parent / f"home-{log.stem}"),
           "PYTHONPATH": str(tree)}
    with served_model(model_dir, log, env, cwd=tree, python=sys.executable) as url:
        served_from = httpx.post(f"{url}/store", json={}).json()
        asyncio.run(_clients(url, tile_body, 1, 1.0))  # warm-up
        tiles = asyncio.run(_clients(url, tile_body, clients, seconds))
        start = time.perf_counter()
        r = httpx.post(f"{url}/plots", content=plots_body, timeout=900,
                       headers={"content-type": "application/geo+json"})
        plot_s = time.perf_counter() - start
    if r.status_code != 200:
        raise RuntimeError(f"/plots answered {r.status_code}: {r.text[:300]}")
    return {"tiles_per_s": tiles["requests_per_s"], "tile_p95_ms": tiles["p95_ms"],
            "plots_per_s": len(r.json()["features"]) / plot_s, "plots_seconds": plot_s,
            "store_version_reported": "version" in served_from}


def queues_before_after(model_dir: Path, tile: NDArray[np.generic], work: Path,
                        before: str = BEFORE, clients: int = 8, seconds: float = 10.0,
                        plots: int = 2000, side: int = 4096, rounds: int = 2
                        ) -> dict[str, Any]:
    """Tiles/s and plots/s served by the tree at ``before`` and by this one.

    Args:
        model_dir: The exported model both trees serve.
        tile: One model input tile (sent base64, one per request).
        work: Where the store, the plots and the exported tree go.
        before: The revision measured as "before".
        clients: Concurrent tile clients.
        seconds: How long the tile clients run per round.
        plots: Plots in the ``/plots`` request.
        side: Side of the store's one cell, in pixels.
        rounds: Alternations of the two trees.
    """
    work, model_dir = work.resolve(), model_dir.resolve()  # the servers run elsewhere
    work.mkdir(parents=True, exist_ok=True)
    trees = {"before": export_tree(before, work / f"tree-{before}"), "after": REPO}
    store = write_stores(work, side)[0]
    plots_body = write_plots(work, plots, side)[0].read_bytes()
    tile_body = json.dumps({"tiles": encode_tiles(tile[None])}).encode()
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for round_ in range(rounds):
        for name, tree in trees.items():
            runs[name].append(_serve_and_measure(
                tree, model_dir, store, tile_body, plots_body, clients, seconds,
                work / f"serve-{name}-{round_}.log"))
    best = {name: {key: max(r[key] for r in rows) for key in ("tiles_per_s", "plots_per_s")}
            for name, rows in runs.items()}
    return {"before_revision": before, "clients": clients, "plots": plots,
            "store_side_px": side, "rounds": runs, "best": best,
            "tiles_ratio": best["after"]["tiles_per_s"] / best["before"]["tiles_per_s"],
            "plots_ratio": best["after"]["plots_per_s"] / best["before"]["plots_per_s"]}
