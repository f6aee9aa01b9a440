"""Scene and service benchmarks: a full Sentinel-2 tile end to end, and HTTP clients.

The scene is built from the demo imagery repeated to 10980 x 10980 px (10 bands,
uint16, tiled GeoTIFF), classified by :func:`serving.inference.scene.classify_file` in a child
process so that its peak RSS is its own (``VmHWM``). The service is a real
``bentoml serve`` on loopback, called by N concurrent asyncio clients each sending one
tile per request (base64 binary; nested lists once, for comparison), with adaptive
batching on (max batch 32) and off (``CACAOMAP_BATCHING=off``: each request on its own).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window

from serving.http.local_server import served_model
from serving.http.tile_payload import encode_tiles
from serving.imagery.composite import composite_band_indexes

SENTINEL2_TILE = 10980


def build_scene(source: Path, out: Path, size: int) -> Path:
    """A ``size`` x ``size`` scene made of ``source`` repeated, written in strips."""
    if out.exists():
        with rasterio.open(out) as done:
            if done.width == size:
                return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(source) as src:
        # A composite's count band stays behind: the scene is the model's bands.
        indexes = composite_band_indexes(src, src.count - 1) or list(
            range(1, src.count + 1))
        data = src.read(indexes)
        profile = src.profile | {"width": size, "height": size, "tiled": True,
                                 "count": len(indexes),
                                 "blockxsize": 512, "blockysize": 512, "compress": "none",
                                 "BIGTIFF": "YES"}
    reps = -(-size // data.shape[2])
    row_strip = np.tile(data, (1, 1, reps))[:, :, :size]
    tmp = out.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, data.shape[1]):
            h = min(data.shape[1], size - row)
            dst.write(row_strip[:, :h], window=Window(0, row, size, h))
    tmp.replace(out)
    return out


# Peak RSS from /proc/self/status VmHWM: ru_maxrss survives exec on Linux and would
# report the parent's peak.
_CHILD = """
import json, sys, time
from serving.inference.scene import classify_file
from serving.inference.tiles import TileClassifier
classifier = TileClassifier.from_model_dir(sys.argv[1])
start = time.perf_counter()
result = classify_file(sys.argv[2], sys.argv[3], classifier, batch_size=int(sys.argv[4]))
elapsed = time.perf_counter() - start
status = open("/proc/self/status").read()
hwm_kb = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps({"seconds": elapsed, "windows": result.windows,
                  "width": result.width, "height": result.height,
                  "peak_rss_mb": hwm_kb / 1024}))
"""


def classify_scene_child(model_dir: Path, scene: Path, out: Path, batch: int = 8
                         ) -> dict[str, Any]:
    """Classify a scene file in a fresh process: seconds, windows, Mpx/s, peak RSS."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(model_dir), str(scene),
                           str(out), str(batch)], capture_output=True, text=True,
                          check=True)
    record: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    record["mpx_per_s"] = record["width"] * record["height"] / record["seconds"] / 1e6
    out.unlink(missing_ok=True)
    return record


async def _clients(url: str, body: bytes, clients: int, seconds: float,
                   until: Callable[[], bool] | None = None) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``seconds`` (or until ``until()`` is true)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        stop = time.perf_counter() + seconds

        def going() -> bool:
            return not until() if until is not None else time.perf_counter() < stop

        async def worker() -> None:
            while going():
                t0 = time.perf_counter()
                r = await client.post(f"{url}/classify_tiles", content=body,
                                      headers={"content-type": "application/json"})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) * 1e3
    return {"clients": clients, "requests_per_s": len(latencies) / elapsed,
            "statuses": statuses,
            **{f"p{q}_ms": float(np.percentile(lat, q)) if len(lat) else None
               for q in (50, 95, 99)}}


def batch_sizes_from_metrics(text: str) -> dict[str, float]:
    """Mean adaptive batch size of /classify_tiles from BentoML's Prometheus metrics."""
    found = {}
    for stat in ("sum", "count"):
        m = re.search(rf'bentoml_service_adaptive_batch_size_{stat}\{{[^}}]*'
                      rf'method_name="classify_tiles"[^}}]*\}} ([\d.e+]+)', text)
        if m:
            found[stat] = float(m.group(1))
    if found.get("count"):
        return {"batches": found["count"], "mean_batch_size": found["sum"] / found["count"]}
    return {}


def service_throughput(model_dir: Path, tile: NDArray[np.generic], client_counts: list[int],
                       seconds: float, log_dir: Path) -> list[dict[str, Any]]:
    """Requests/s and latency percentiles by client count, batching on and off.

    Tiles are sent in the binary form (base64 bytes); one client also sends the
    nested-list form, to show what parsing 655,360 JSON numbers per tile costs.
    """
    bodies = {"binary": json.dumps({"tiles": encode_tiles(tile[None])}).encode(),
              "lists": ('{"tiles": ' + json.dumps(tile[None].tolist()) + "}").encode()}
    runs = [("lists", 1)] + [("binary", n) for n in client_counts]
    rows = []
    for label in ("on", "off"):
        env = {"CACAOMAP_BATCHING": label, "CACAOMAP_MAX_IN_FLIGHT": "256",
               "BENTOML_HOME": str(log_dir / f"home-{label}")}
        with served_model(model_dir, log_dir / f"serve-{label}.log", env) as url:
            asyncio.run(_clients(url, bodies["binary"], 1, 1.0))  # warm-up
            for payload, clients in runs:
                before = batch_sizes_from_metrics(httpx.get(f"{url}/metrics").text)
                row = {"payload": payload,
                       **asyncio.run(_clients(url, bodies[payload], clients, seconds))}
                after = batch_sizes_from_metrics(httpx.get(f"{url}/metrics").text)
                if after and before:
                    n = after["batches"] - before["batches"]
                    total = (after["mean_batch_size"] * after["batches"]
                             - before["mean_batch_size"] * before["batches"])
                    row["mean_batch_size"] = total / n if n else None
                rows.append({"batching": label, **row})
    return rows


def tiles_while_scene(model_dir: Path, tile: NDArray[np.generic], scene: Path,
                      seconds: float, log_dir: Path) -> dict[str, Any]:
    """Tile latency with one client, idle and while the service classifies ``scene``.

    The scene is posted to ``/classify_scene_summary`` from a thread; tile requests
    are measured from the moment it is sent until its answer arrives.
    """
    body = json.dumps({"tiles": encode_tiles(tile[None])}).encode()
    size_mb = scene.stat().st_size / 2**20
    env = {"BENTOML_HOME": str(log_dir / "home-scene"),
           "CACAOMAP_MAX_UPLOAD_MB": str(int(size_mb * 2) + 64)}
    with served_model(model_dir, log_dir / "serve-scene.log", env) as url:
        asyncio.run(_clients(url, body, 1, 2.0))  # warm-up
        idle = asyncio.run(_clients(url, body, 1, seconds))
        answer: dict[str, Any] = {}

        def post_scene() -> None:
            start = time.perf_counter()
            with open(scene, "rb") as f:
                r = httpx.post(f"{url}/classify_scene_summary", timeout=1800,
                               files={"scene": (scene.name, f, "image/tiff")})
            answer.update(status=r.status_code, seconds=time.perf_counter() - start)

        worker = threading.Thread(target=post_scene)
        worker.start()
        busy = asyncio.run(_clients(url, body, 1, 0.0, until=lambda: not worker.is_alive()))
        worker.join()
    return {"idle": idle, "during_scene": busy, "scene": answer,
            "scene_side": _width(scene),
            "p99_ratio": busy["p99_ms"] / idle["p99_ms"]
            if busy["p99_ms"] and idle["p99_ms"] else None}


def _width(path: Path) -> int:
    with rasterio.open(path) as src:
        return int(src.width)
