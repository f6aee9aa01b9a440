"""Bounded queues: refused at once when full; work never started once its caller is gone."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.http.work_queues import BoundedPool, DeadlinePassed, QueueFull


def test_a_full_queue_refuses_at_once_and_frees_its_place() -> None:
    pool = BoundedPool("plots", threads=1, limit=2, setting="CACAOMAP_MAX_QUEUED_PLOTS")
    gate = threading.Event()

    async def scenario() -> tuple[float, list[object]]:
        first = asyncio.ensure_future(pool.run(gate.wait, 5))
        second = asyncio.ensure_future(pool.run(lambda: "second"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(QueueFull, match="CACAOMAP_MAX_QUEUED_PLOTS=2"):
            await pool.run(lambda: "third")
        refused_in = time.monotonic() - started
        gate.set()
        done = await asyncio.gather(first, second)
        assert await pool.run(lambda: "after") == "after"  # places are given back
        return refused_in, list(done)

    refused_in, done = asyncio.run(scenario())
    assert done == [True, "second"]
    assert refused_in < 1.0  # at once, not after the queue drained
    pool.shutdown()


def test_work_whose_caller_left_or_whose_deadline_passed_never_runs() -> None:
    pool = BoundedPool("scenes", threads=1, limit=5, setting="CACAOMAP_MAX_QUEUED_SCENES")
    gate, ran = threading.Event(), []

    async def scenario() -> None:
        busy = asyncio.ensure_future(pool.run(gate.wait, 5))
        left = asyncio.ensure_future(pool.run(ran.append, "left"))
        late = asyncio.ensure_future(pool.run(ran.append, "late", deadline_s=0.05))
        await asyncio.sleep(0.2)
        left.cancel()  # the client went away while its request waited
        await asyncio.sleep(0.05)
        gate.set()
        await busy
        with pytest.raises(asyncio.CancelledError):
            await left
        with pytest.raises(DeadlinePassed):
            await late

    asyncio.run(scenario())
    assert ran == [] and pool.not_run == 2 and pool.held == 0
    pool.shutdown()
