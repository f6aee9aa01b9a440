"""Bounded queues for the service's long work: scenes and plots, each its own threads.

A :class:`BoundedPool` runs one kind of work (scenes, plot checks) in threads of its
own, so plots never wait behind scenes, and holds at most ``limit`` requests of that
kind, queued or running: the next one is refused at once (:class:`QueueFull`, answered
503 with ``Retry-After``), as Triton's ``max_queue_size`` does, instead of waiting past
its client's timeout. Work that has not started when its caller goes away (the request
task is cancelled) or when its deadline has passed is never run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    """The queue of a kind of work holds its limit: refuse now, retry later."""


class DeadlinePassed(RuntimeError):
    """Queued work whose deadline passed before a thread was free: not run."""


class BoundedPool:
    """Threads for one kind of work, with a bound on the requests waiting or running.

    Args:
        name: The kind of work, in messages (``scenes``, ``plots``).
        threads: Threads running it.
        limit: Most requests of this kind queued or running at once.
        setting: The setting that sets ``limit``, named in the refusal.
        initializer: Run in each thread as it starts (e.g. a lower CPU priority).
    """

    def __init__(self, name: str, threads: int, limit: int, setting: str,
                 initializer: Callable[[], None] | None = None) -> None:
        self.name, self.limit, self.setting = name, limit, setting
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix=name,
                                       initializer=initializer)
        self.held = 0
        self.not_run = 0

    async def run(self, work: Callable[..., T], *args: Any, deadline_s: float | None = None
                  ) -> T:
        """Run ``work(*args)`` in the pool; refuse at once when the queue is full.

        Raises:
            QueueFull: ``limit`` requests of this kind are queued or running.
            DeadlinePassed: No thread was free within ``deadline_s``.
        """
        if self.held >= self.limit:
            raise QueueFull(f"{self.held} {self.name} requests are queued or running, the "
                            f"most this service holds ({self.setting}={self.limit}); "
                            "retry later")
        self.held += 1
        queued = time.monotonic()

        def started() -> T:
            if deadline_s is not None and time.monotonic() - queued > deadline_s:
                self.not_run += 1
                raise DeadlinePassed(f"the {self.name} request waited {deadline_s:.0f} s "
                                     "for a thread: not run")
            return work(*args)

        future = self.pool.submit(started)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.cancel():  # its caller went away before it started: never run
                self.not_run += 1
            raise
        finally:
            self.held -= 1

    def shutdown(self) -> None:
        """Stop the threads once the work in them is done."""
        self.pool.shutdown(wait=False, cancel_futures=True)
