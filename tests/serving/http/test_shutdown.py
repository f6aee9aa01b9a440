"""``SIGTERM`` stops a real ``bentoml serve``, draining what is in flight.

Promptly when idle or after an abandoned upload; with clients busy, after their work
in flight is answered and new work refused (503 + Retry-After).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from serving.http.local_server import free_port
from serving.http.tile_payload import encode_tiles
from tests.model_factory import write_local_model
from tests.service_helpers import REPO, show_table

pytestmark = [pytest.mark.slow, pytest.mark.server]
#: Seconds a stop may take (BentoML's own shutdown is under 2 s here).
STOP_WITHIN_S = 15


#: CACAOMAP_DRAIN_S of the drain tests: long enough for the scene in flight.
DRAIN_S = 30
#: Tile clients sending while the service is told to stop.
CLIENTS = 8


def serve(model: Path, log: Path, drain_s: float = DRAIN_S
          ) -> tuple[subprocess.Popen[bytes], int]:
    """``bentoml serve`` of the service on a free port, once ``/readyz`` answers."""
    port = free_port()
    env = os.environ | {"CACAOMAP_MODEL": str(model), "BENTOML_DO_NOT_TRACK": "true",
                        "CACAOMAP_DRAIN_S": str(drain_s)}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve",
                             "serving.http.service:CacaoMap", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("bentoml serve was not ready")


def seconds_to_stop(proc: subprocess.Popen[bytes], limit_s: float = STOP_WITHIN_S
                    ) -> float:
    """Send SIGTERM and time the exit (killed, and a failure, past the limit)."""
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - start


@pytest.mark.parametrize("before", ["idle", "abandoned upload"])
def test_sigterm_stops_the_service(before: str, tmp_path: Path) -> None:
    model = write_local_model(tmp_path / "v1", tile_size=64, overlap=16)
    proc, port = serve(model, tmp_path / "serve.log")
    if before == "abandoned upload":
        # Headers for a large body, one byte of it, then the client goes away.
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /classify_tiles HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 1000000"
                           b"\r\n\r\n{")
            time.sleep(0.5)
        time.sleep(0.5)
    took = seconds_to_stop(proc)
    assert took < STOP_WITHIN_S, f"still running {STOP_WITHIN_S} s after SIGTERM ({before})"
    assert proc.returncode == 0


def write_scene(path: Path, size: int) -> Path:
    """A 10-band uint16 GeoTIFF of ``size`` x ``size`` px, deflated to a few MB.

    Its upload takes a fraction of a second even on busy cores, so the scene is being
    classified (not received) when the test sends ``SIGTERM``.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    band = (100 + (rows // 7 + cols // 5) % 3900).astype(np.uint16)
    data = np.stack([band + 10 * k for k in range(10)])
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=10,
                       dtype="uint16", crs="EPSG:32718", compress="deflate", tiled=True,
                       transform=from_origin(500_000, 9_000_000, 10, 10)) as dst:
        dst.write(data)
    return path


class Outcomes:
    """What each client saw: statuses, and transport errors by name."""

    def __init__(self) -> None:
        self.by_client: dict[str, Counter[str]] = {}
        self.bad_refusals: list[str] = []
        self.lock = threading.Lock()

    def add(self, client: str, outcome: str) -> None:
        """Count one outcome of a client."""
        with self.lock:
            self.by_client.setdefault(client, Counter())[outcome] += 1


def tile_client(url: str, name: str, out: Outcomes, stop: threading.Event) -> None:
    """Send 2-tile requests on one keep-alive connection until refused or stopped."""
    tiles = np.random.default_rng(1).integers(100, 4000, (2, 10, 64, 64)).astype(np.uint16)
    body = {"tiles": encode_tiles(tiles)}
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            try:
                r = client.post(f"{url}/classify_tiles", json=body)
            except httpx.ConnectError:  # not listening any more: nothing was sent
                out.add(name, "refused (not listening)")
                return
            except httpx.TransportError as err:
                out.add(name, f"error {type(err).__name__}")
                return
            out.add(name, str(r.status_code))
            if r.status_code == 503:
                if "retry-after" not in r.headers or "shutting down" not in r.text:
                    out.bad_refusals.append(f"{name}: {r.headers} {r.text}")
                return  # a client honours the refusal and goes elsewhere


def post_scene(url: str, scene: Path, out: Outcomes, started: threading.Event) -> None:
    """Classify a scene; record the answer."""
    with open(scene, "rb") as f:
        started.set()
        try:
            r = httpx.post(f"{url}/classify_scene", timeout=300,
                           files={"scene": (scene.name, f, "image/tiff")})
        except httpx.TransportError as err:
            out.add("scene", f"error {type(err).__name__}")
            return
    out.add("scene", str(r.status_code))


def busy_service(url: str, scene: Path, out: Outcomes
                 ) -> tuple[threading.Event, list[threading.Thread]]:
    """Start the tile clients and the scene; return once the scene is being worked on."""
    stop = threading.Event()
    started = threading.Event()
    threads = [threading.Thread(target=tile_client, args=(url, f"tiles {k}", out, stop))
               for k in range(CLIENTS)]
    threads.append(threading.Thread(target=post_scene, args=(url, scene, out, started)))
    for thread in threads:
        thread.start()
    started.wait(10)
    time.sleep(3)  # the upload is received and the scene is being classified
    return stop, threads


def test_sigterm_drains_clients_and_a_scene_in_flight(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = write_local_model(tmp_path / "v1", tile_size=64, overlap=16)
    scene = write_scene(tmp_path / "scene.tif", 3072)
    proc, port = serve(model, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    out = Outcomes()
    stop, threads = busy_service(url, scene, out)
    assert out.by_client.get("scene") is None, "the scene was answered before SIGTERM"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:
        ready = httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.TransportError as err:
        ready = type(err).__name__
    try:
        proc.wait(timeout=DRAIN_S + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
    took = time.monotonic() - start
    stop.set()
    for thread in threads:
        thread.join(60)
    rows = [[name, ", ".join(f"{k}: {v}" for k, v in sorted(seen.items()))]
            for name, seen in sorted(out.by_client.items())]
    rows.append(["SIGTERM to exit", f"{took:.1f} s (CACAOMAP_DRAIN_S={DRAIN_S})"])
    rows.append(["/readyz while draining", str(ready)])
    show_table(capsys, "SIGTERM with 8 tile clients and a scene in flight",
               ["client", "answers"], rows, "shutdown_drain.json")
    log = (tmp_path / "serve.log").read_text()
    assert took < DRAIN_S + 5 and proc.returncode == 0, log[-3000:]
    assert ready == 503, log[-3000:]
    assert out.by_client["scene"] == Counter({"200": 1}), log[-3000:]
    for name, seen in out.by_client.items():
        assert set(seen) <= {"200", "503", "refused (not listening)"}, (name, seen)
    assert not out.bad_refusals
    assert sum(seen["503"] for seen in out.by_client.values()) >= 1
    assert "drained in" in log and "Traceback" not in log


def test_drain_deadline_ends_a_scene_that_runs_too_long(tmp_path: Path) -> None:
    model = write_local_model(tmp_path / "v1", tile_size=64, overlap=16)
    scene = write_scene(tmp_path / "scene.tif", 4096)  # ~8 s of work on 2 cores
    proc, port = serve(model, tmp_path / "serve.log", drain_s=1)
    out = Outcomes()
    stop, threads = busy_service(f"http://127.0.0.1:{port}", scene, out)
    took = seconds_to_stop(proc, limit_s=1 + 5)
    stop.set()
    for thread in threads:
        thread.join(60)
    log = (tmp_path / "serve.log").read_text()
    assert took < 1 + 5, log[-3000:]
    assert "drain deadline of 1 s passed" in log
    assert out.by_client["scene"] != Counter({"200": 1})  # cut: it needed longer


def test_a_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    model = write_local_model(tmp_path / "v1", tile_size=64, overlap=16)
    scene = write_scene(tmp_path / "scene.tif", 4096)
    proc, port = serve(model, tmp_path / "serve.log")  # a 30-s drain
    out = Outcomes()
    stop, threads = busy_service(f"http://127.0.0.1:{port}", scene, out)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    seconds_to_stop(proc, limit_s=5)
    took = time.monotonic() - start
    stop.set()
    for thread in threads:
        thread.join(60)
    log = (tmp_path / "serve.log").read_text()
    assert took < 1 + 5, log[-3000:]
    assert "second signal while draining" in log
    assert out.by_client["scene"] != Counter({"200": 1})  # cut: it needed longer
