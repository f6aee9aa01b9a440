"""A rolling restart that loses nothing: two replicas behind one address, one restarted.

Two ``bentoml serve`` replicas of the service (a model and a store) sit behind a small
reverse proxy on loopback (round robin; a refused connection or a 503 from one replica
is tried on the other, as a load balancer's retry does). Eight clients (six sending
tiles, two sending plots, with :class:`serving.client.CacaoMapClient`, which retries
on 503 and refused connections) call through the proxy while one replica gets
``SIGTERM`` (it drains: requests in flight finish, new ones get 503), exits, and is
started again on its port. Every request is counted: answered correctly, retried by
the proxy, lost (an exception at the client), or a 5xx at the client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving.client import CacaoMapClient
from serving.http.local_server import free_port
from serving.inference.tiles import TileClassifier
from serving.plots.check import CheckOptions, run_checks
from serving.store.reader import open_store
from tests.service_helpers import REPO, show_table

pytestmark = [pytest.mark.slow, pytest.mark.server]
#: Seconds the clients call before, and after, the restart.
CALLING_S = 4
TILE_CLIENTS, PLOT_CLIENTS = 6, 2


def start_replica(model: Path, store: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """A replica on ``port``, returned once ``/readyz`` answers 200."""
    env = os.environ | {"CACAOMAP_MODEL": str(model), "CACAOMAP_STORE": str(store),
                        "CACAOMAP_DRAIN_S": "30", "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve",
                             "serving.http.service:CacaoMap", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=REPO,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"replica on {port} not ready: {log.read_text()[-2000:]}")


class Proxy:
    """Round robin over the replicas; a refused connection or a 503 tries the next."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.turn = 0
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def app(self) -> Any:
        """The proxy as an ASGI app."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def forward(request: Request) -> Response:
            body = await request.body()
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "content-length")}
            with self.lock:
                first = self.turn
                self.turn += 1
            async with httpx.AsyncClient(timeout=300) as client:
                for k in range(len(self.backends)):
                    backend = self.backends[(first + k) % len(self.backends)]
                    try:
                        answer = await client.request(
                            request.method, backend + request.url.path,
                            params=request.query_params, content=body, headers=headers)
                    except httpx.TransportError:
                        self.counts["tried the other replica (refused)"] += 1
                        continue
                    if answer.status_code == 503:
                        self.counts["tried the other replica (503)"] += 1
                        continue
                    self.counts["forwarded"] += 1
                    keep = {k: v for k, v in answer.headers.items() if k.lower() not in (
                        "content-length", "transfer-encoding", "connection",
                        "content-encoding")}
                    return Response(answer.content, answer.status_code, keep)
            self.counts["503 to the client (no replica)"] += 1
            return Response(b'{"error": "no replica answers"}', 503,
                            {"retry-after": "1", "content-type": "application/json"})

        return Starlette(routes=[Route("/{path:path}", forward,
                                       methods=["GET", "POST", "HEAD"])])


@pytest.fixture()
def proxied(built_store: Path, store_model: Path, tmp_path: Path
            ) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], list[int], Proxy]]:
    import uvicorn

    ports = [free_port(), free_port()]
    logs = [tmp_path / f"replica{k}.log" for k in range(2)]
    replicas = [start_replica(store_model, built_store, p, log)
                for p, log in zip(ports, logs, strict=True)]
    proxy = Proxy([f"http://127.0.0.1:{p}" for p in ports])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(proxy.app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", replicas, ports, proxy
    finally:
        server.should_exit = True
        thread.join(10)
        for proc in replicas:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)


def test_a_rolling_restart_loses_nothing(
        proxied: tuple[str, list[subprocess.Popen[bytes]], list[int], Proxy],
        built_store: Path, store_model: Path, region_data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    url, replicas, ports, proxy = proxied
    tiles = np.random.default_rng(3).integers(100, 4000, (2, 10, 64, 64)).astype(np.uint16)
    expected_tiles = TileClassifier.from_model_dir(store_model).classify(tiles)
    statement = json.loads((region_data / "plots_eudr.geojson").read_text())
    statement["features"] = statement["features"][:12]
    expected_plots = [r["verdict"] for r in run_checks(
        json.dumps(statement).encode(), open_store(built_store), CheckOptions())[1]]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def count(what: str) -> None:
        with lock:
            outcomes[what] += 1

    def caller(kind: str) -> None:
        with CacaoMapClient(url, retries=20, max_wait_s=5, timeout=300) as client:
            while not stop.is_set():
                try:
                    if kind == "tiles":
                        ok = np.array_equal(client.classify_tiles(tiles=tiles),
                                            expected_tiles)
                    else:
                        answer = client.plots(statement)
                        ok = [f["properties"]["cacaomap"]["verdict"]
                              for f in answer["features"]] == expected_plots
                    count(f"{kind}: answered correctly" if ok else f"{kind}: WRONG answer")
                except Exception as err:  # a lost request, whatever it was
                    count(f"{kind}: lost ({type(err).__name__}: {str(err)[:80]})")

    threads = [threading.Thread(target=caller, args=("tiles",)) for _ in range(TILE_CLIENTS)]
    threads += [threading.Thread(target=caller, args=("plots",)) for _ in range(PLOT_CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(CALLING_S)
    before = sum(outcomes.values())
    # the rolling restart of replica 0: SIGTERM, drain, exit, start again on its port
    started = time.monotonic()
    os.killpg(replicas[0].pid, signal.SIGTERM)
    replicas[0].wait(60)
    stopped_s = time.monotonic() - started
    replicas[0] = start_replica(store_model, built_store, ports[0],
                                tmp_path / "replica0.log")
    back_s = time.monotonic() - started
    during = sum(outcomes.values()) - before
    time.sleep(CALLING_S)
    stop.set()
    for t in threads:
        t.join(120)
    lost = {k: v for k, v in outcomes.items() if "lost" in k or "WRONG" in k}
    answered = sum(v for k, v in outcomes.items() if "correctly" in k)
    rows = [["requests answered correctly", str(answered)],
            ["of them while replica 0 drained, stopped and started again",
             str(during)],
            *[[k, str(v)] for k, v in sorted(proxy.counts.items())],
            ["lost or wrong at the clients", str(sum(lost.values()))],
            ["replica 0: SIGTERM to exit, to ready again", f"{stopped_s:.1f} s, "
                                                           f"{back_s:.1f} s"]]
    show_table(capsys, "rolling restart, 8 clients through one address", ["", "count"],
               rows, "rolling_restart.json")
    assert lost == {}, lost
    assert answered > 0 and during > 0  # traffic went on through the restart
    assert proxy.counts["forwarded"] >= answered
    assert proxy.counts["503 to the client (no replica)"] == 0
