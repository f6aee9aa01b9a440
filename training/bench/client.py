"""Benchmark: one Python caller of ``/classify_tiles``, by client and payload form.

Against a real ``bentoml serve``, one caller sends one tile per request for a fixed
time, in turn as:

- ``httpx_binary``: the raw binary form posted with httpx (the floor of what a client
  can cost);
- ``bentoml_lists``: ``bentoml.SyncHTTPClient`` given the numpy array (it sends nested
  lists, 655,360 JSON numbers for a 256-px, 10-band tile);
- ``bentoml_binary``: the same client given ``encode_tiles(array)``;
- ``cacaomap_client``: :class:`serving.client.CacaoMapClient` given the numpy array
  (binary, and 503s retried).

Each reports requests/s and median/p95 latency, and the ratio to ``httpx_binary``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
import httpx
import numpy as np
from numpy.typing import NDArray

from serving.client import CacaoMapClient
from serving.http.local_server import served_model
from serving.http.tile_payload import encode_tiles


def _timed(call: Callable[[], Any], seconds: float) -> dict[str, float]:
    """Call repeatedly for ``seconds`` (at least 3 times): rate and latencies."""
    call()  # warm-up: connection, schema, first batch
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < 3:
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "requests_per_s": len(latencies) / total,
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def client_bench(model_dir: Path, tile: NDArray[np.generic], seconds: float,
                 log_dir: Path) -> list[dict[str, Any]]:
    """Requests/s of one caller per client and payload form (see the module docstring).

    Args:
        model_dir: The model served.
        tile: One tile (bands, tile, tile) of the model's input dtype.
        seconds: Measuring time per form.
        log_dir: Where the server's log and BentoML home go.
    """
    tiles = np.ascontiguousarray(tile[None])
    expected: NDArray[np.uint8] | None = None
    env = {"BENTOML_HOME": str(log_dir / "home-client")}
    rows: list[dict[str, Any]] = []
    with served_model(model_dir, log_dir / "serve-client.log", env) as url:
        raw = json.dumps({"tiles": encode_tiles(tiles)}).encode()
        with httpx.Client(base_url=url, timeout=300) as plain, \
                bentoml.SyncHTTPClient(url, timeout=300) as stock, \
                CacaoMapClient(url) as ours:
            def httpx_binary() -> NDArray[np.uint8]:
                r = plain.post("/classify_tiles", content=raw,
                               headers={"content-type": "application/json"})
                r.raise_for_status()
                return np.asarray(r.json(), np.uint8)

            forms: dict[str, Callable[[], Any]] = {
                "httpx_binary": httpx_binary,
                "bentoml_lists": lambda: stock.classify_tiles(tiles=tiles),
                "bentoml_binary": lambda: stock.classify_tiles(tiles=encode_tiles(tiles)),
                "cacaomap_client": lambda: ours.classify_tiles(tiles=tiles),
            }
            for name, call in forms.items():
                got = np.asarray(call())
                if expected is None:
                    expected = got
                rows.append({"form": name, "same_codes": bool(np.array_equal(got, expected)),
                             **_timed(call, seconds)})
    floor = rows[0]["requests_per_s"]
    for row in rows:
        row["vs_httpx_binary"] = row["requests_per_s"] / floor
    return rows
