"""Overload and soak against a real `bentoml serve`.

Open-loop load above capacity must be shed with 503 + Retry-After while /livez and
/readyz stay 200 and nothing else fails; a soak of mixed requests must not grow the
server's memory. Figures are printed and saved to ``tests/artifacts/``; timings are
reported, not asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.http.local_server import ServerURL, served_model
from tests.model_factory import write_local_model
from tests.service_helpers import REPO, server_rss_mb, show_table

pytestmark = [pytest.mark.server, pytest.mark.slow]
TILE = 32
IN_FLIGHT = 8
SOAK_REQUESTS = 5000
SOAK_RSS_GROWTH_MB = 50
#: Attempts per soak request (a 503 with Retry-After is retried).
SOAK_RETRIES = 5
#: Windows of 20 requests watched for latency to return to its baseline.
RECOVERY_WINDOWS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    work = tmp_path_factory.mktemp("overload")
    model = write_local_model(work / "v1", tile_size=TILE, overlap=8)
    env = {"BENTOML_HOME": str(work / "home"), "CACAOMAP_MAX_IN_FLIGHT": str(IN_FLIGHT),
           "CACAOMAP_MAX_BATCH_SIZE": "8", "CACAOMAP_MAX_LATENCY_MS": "200"}
    with served_model(model, work / "serve.log", env, cwd=REPO) as url:
        yield url


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerURL]:
    """The service with its default limits (batching: 32 tiles, 10 s)."""
    work = tmp_path_factory.mktemp("soak")
    model = write_local_model(work / "v1", tile_size=TILE, overlap=8)
    with served_model(model, work / "serve.log", {"BENTOML_HOME": str(work / "home")},
                      cwd=REPO) as url:
        yield url


def tiles_json(n: int, seed: int = 0) -> bytes:
    tiles = np.random.default_rng(seed).integers(100, 4000, (n, 10, TILE, TILE))
    return ('{"tiles": ' + str(tiles.tolist()) + "}").encode()


async def _closed_loop(url: str, body: bytes, clients: int, requests: int) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=60) as client:
        async def worker(k: int) -> None:
            for _ in range(k):
                t0 = time.perf_counter()
                r = await client.post(f"{url}/classify_tiles", content=body,
                                      headers={"content-type": "application/json"})
                assert r.status_code == 200, r.text
                latencies.append(time.perf_counter() - t0)
        await asyncio.gather(*(worker(requests // clients) for _ in range(clients)))
    return latencies


async def _open_loop(url: str, body: bytes, rate: float, seconds: float
                     ) -> tuple[Counter[int], int, Counter[int]]:
    """Send at ``rate`` req/s regardless of answers; probe health meanwhile."""
    statuses: Counter[int] = Counter()
    health: Counter[int] = Counter()
    missing_retry_after = 0
    # A new connection per request: a reused keep-alive connection that the server
    # closes while the client writes would show up as a client-side error.
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def one() -> None:
            nonlocal missing_retry_after
            try:
                r = await client.post(f"{url}/classify_tiles", content=body,
                                      headers={"content-type": "application/json"})
            except httpx.TransportError as err:
                statuses[type(err).__name__] += 1  # type: ignore[index]
                return
            statuses[r.status_code] += 1
            if r.status_code in (429, 503) and "retry-after" not in r.headers:
                missing_retry_after += 1

        async def probe(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(timeout=10) as hc:
                while not stop.is_set():
                    for path in ("/livez", "/readyz"):
                        health[(await hc.get(f"{url}{path}")).status_code] += 1
                    await asyncio.sleep(0.05)

        stop = asyncio.Event()
        prober = asyncio.create_task(probe(stop))
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        stop.set()
        await prober
    return statuses, missing_retry_after, health


def test_overload_is_shed_with_503_and_retry_after(
    server: ServerURL, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tiles_json(1)
    asyncio.run(_closed_loop(server, body, 1, 10))  # warm up
    before = asyncio.run(_closed_loop(server, body, 1, 20))
    t0 = time.perf_counter()
    n = 64
    asyncio.run(_closed_loop(server, body, IN_FLIGHT, n))
    capacity = n / (time.perf_counter() - t0)
    rate = 4 * capacity
    statuses, missing_retry_after, health = asyncio.run(_open_loop(server, body, rate, 6))
    # Latency after the overload, in windows of 20 single-client requests, until it is
    # back within 2x its baseline (or RECOVERY_WINDOWS have passed): reported, not timed.
    end = time.perf_counter()
    recovery: list[tuple[float, float]] = []
    for _ in range(RECOVERY_WINDOWS):
        after = asyncio.run(_closed_loop(server, body, 1, 20))
        recovery.append((time.perf_counter() - end, float(np.median(after))))
        if recovery[-1][1] <= 2 * np.median(before):
            break
    rows = [
        ["capacity (closed loop, 8 clients)", f"{capacity:.0f} req/s"],
        ["offered (open loop, 6 s)", f"{rate:.0f} req/s, {sum(statuses.values())} requests"],
        ["answers", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str))],
        ["503/429 without Retry-After", str(missing_retry_after)],
        ["/livez + /readyz during overload", ", ".join(f"{k}: {v}" for k, v in health.items())],
        ["p50 latency before (1 client)", f"{np.median(before) * 1e3:.0f} ms"],
        ["p50 latency after, per 20 requests (s after: ms)",
         ", ".join(f"{t:.1f}: {v * 1e3:.0f}" for t, v in recovery)],
    ]
    show_table(capsys, "Overload against bentoml serve (CACAOMAP_MAX_IN_FLIGHT=8)",
               ["quantity", "value"], rows, "overload.json")
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[503] + statuses[429] > 0, "load above capacity was never shed"
    assert statuses[200] > 0
    assert missing_retry_after == 0
    assert set(health) == {200}, health


def test_soak_does_not_grow_memory(default_server: ServerURL, landscape: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    server = default_server
    bodies = {n: tiles_json(n, n) for n in (1, 2, 4, 8)}
    scene = (landscape / "images" / "s2l2a_20240820.tif").read_bytes()
    mix = np.random.default_rng(0).choice([1, 1, 1, 2, 4, 8, 0], SOAK_REQUESTS)
    statuses: Counter[int] = Counter()
    shed: Counter[str] = Counter()
    rss: list[float] = []

    async def run() -> None:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            async def post(n: int) -> httpx.Response:
                if n == 0:  # a whole (small) scene now and then
                    return await client.post(f"{server}/classify_scene_summary",
                                             files={"scene": ("s.tif", scene, "image/tiff")})
                return await client.post(f"{server}/classify_tiles", content=bodies[n],
                                         headers={"content-type": "application/json"})

            async def send(n: int) -> None:
                # A well-behaved client: a 503 is retried after its Retry-After.
                for _ in range(SOAK_RETRIES):
                    r = await post(n)
                    if r.status_code != 503 or "retry-after" not in r.headers:
                        break
                    shed["tiles" if n else "scene"] += 1
                    await asyncio.sleep(float(r.headers["retry-after"]))
                statuses[r.status_code] += 1

            sem = asyncio.Semaphore(IN_FLIGHT - 2)  # stay under the shedding limit

            async def bounded(n: int) -> None:
                async with sem:
                    await send(int(n))

            for chunk in np.array_split(mix, 10):
                await asyncio.gather(*(bounded(n) for n in chunk))
                rss.append(server_rss_mb(server.pid))

    t0 = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    growth = rss[-1] - rss[0]  # from after the first tenth (warm) to the end
    show_table(capsys, f"Soak: {SOAK_REQUESTS} mixed requests (1-8 tiles, scenes)",
               ["quantity", "value"], [
                   ["answers", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))],
                   ["503 + Retry-After, retried", ", ".join(
                       f"{k}: {v}" for k, v in sorted(shed.items())) or "none"],
                   ["elapsed", f"{elapsed:.0f} s ({SOAK_REQUESTS / elapsed:.0f} req/s)"],
                   ["server RSS per tenth (MB)", " ".join(f"{v:.0f}" for v in rss)],
                   ["RSS growth after warm-up", f"{growth:+.1f} MB"]], "soak.json")
    assert statuses == Counter({200: SOAK_REQUESTS}), statuses
    assert growth <= SOAK_RSS_GROWTH_MB
