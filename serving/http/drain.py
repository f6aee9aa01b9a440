"""Graceful shutdown: on ``SIGTERM`` refuse new work, finish what is in flight, exit.

``bentoml serve`` forwards ``SIGTERM`` to each worker, where uvicorn would close the
listening socket at once: a load balancer still sending traffic then sees connections
refused, and nothing tells it the instance is going. Here the first ``SIGTERM`` (or
``SIGINT``) a worker receives starts a *drain* instead:

1. ``/readyz`` answers 503, so an orchestrator takes the instance out of rotation;
2. new API requests are answered 503 with ``Retry-After`` (and ``Connection: close``)
   before any of their work is done, so a client retries on another instance;
3. request bodies still being received are dropped at once (503; a stalled or
   abandoned upload holds nothing);
4. requests already in flight run to their end, for at most ``CACAOMAP_DRAIN_S``
   seconds; then uvicorn's own shutdown runs and the worker exits.

A second signal, or the deadline, ends the worker at once (requests still running are
cut; the log says how many). ``CACAOMAP_DRAIN_S=0`` keeps uvicorn's behaviour.

:func:`install` hooks uvicorn's ``Server.handle_exit`` and ``Server.on_tick`` (uvicorn
0.54) in the workers, and circus's ``SysHandler.handle_term``/``handle_int`` in
``bentoml serve``'s own process (circus forwards the first signal to the workers and
ignores the next ones; here a second signal is passed on to them, so it ends them): see
:data:`UPSTREAM`. :class:`DrainGuard` is the ASGI half, one of the guards.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from serving.settings import current

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

#: The uvicorn code the hooks wrap (module, attribute, first 16 hex digits of the sha256
#: of its source in uvicorn 0.54.0), compared with the installed uvicorn by a test.
UPSTREAM = (
    ("uvicorn.server", "Server.handle_exit", "553276efa26e09ea"),
    ("uvicorn.server", "Server.on_tick", "60ea49b06ccf68c1"),
    ("circus.sighandler", "SysHandler.handle_term", "1d30aee1fcb2c345"),
    ("circus.sighandler", "SysHandler.handle_int", "e07ab813958b1450"),
)
#: Seconds a refused client is asked to wait (another instance will answer by then).
RETRY_AFTER_S = 1
#: Paths that keep answering while the worker drains (liveness, metrics).
STILL_ANSWERED = frozenset({"/livez", "/healthz", "/metrics"})


@dataclass
class DrainState:
    """One worker's drain: whether it has begun, its deadline, what is in flight.

    Attributes:
        started: ``time.monotonic()`` when the drain began (None: serving).
        deadline_s: Longest drain, seconds.
        in_flight: API requests admitted and not yet answered.
        receiving: Cancel scopes of bodies being received, dropped when the drain
            begins (:meth:`drop_bodies`).
    """

    started: float | None = None
    deadline_s: float = 30.0
    in_flight: int = 0
    receiving: set[Any] = field(default_factory=set)

    @property
    def draining(self) -> bool:
        """Whether the worker is draining."""
        return self.started is not None

    def begin(self, deadline_s: float) -> None:
        """Start draining (new requests are refused from now on)."""
        if self.started is None:
            self.started = time.monotonic()
            self.deadline_s = deadline_s

    def elapsed(self) -> float:
        """Seconds since the drain began (0 while serving)."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def drop_bodies(self) -> None:
        """Stop waiting for every body still being received (from the event loop)."""
        for scope in list(self.receiving):
            scope.cancel()


#: This worker's drain.
DRAIN = DrainState()


async def refuse(send: Send, message: str) -> None:
    """Answer 503 with ``Retry-After`` and close the connection."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def draining_message() -> str:
    """What a refused client is told."""
    return (f"this instance is shutting down (draining for {DRAIN.elapsed():.0f} s); "
            f"retry after {RETRY_AFTER_S} s, on another instance if there is one")


class DrainGuard:
    """Refuse new work while draining (503 + Retry-After); count the work admitted."""

    def __init__(self, app: ASGIApp, state: DrainState | None = None) -> None:
        """Wrap ``app``; ``state`` defaults to this worker's :data:`DRAIN`."""
        self.app = app
        self.state = state or DRAIN

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit a request (counted) or, while draining, refuse it."""
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = str(scope.get("path", ""))
        if self.state.draining and path not in STILL_ANSWERED:
            return await refuse(send, draining_message())
        self.state.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= 1


def install(state: DrainState | None = None) -> None:
    """Make uvicorn's first ``SIGTERM``/``SIGINT`` start a drain (once per process).

    uvicorn calls ``Server.handle_exit`` from its signal handler and ``Server.on_tick``
    every 0.1 s from the event loop; the handler only records the drain (a signal
    handler may interrupt the loop anywhere), and the tick drops bodies being received
    and sets ``should_exit`` once nothing is in flight or the deadline has passed.
    """
    from uvicorn.server import Server

    if getattr(Server.handle_exit, "cacaomap_drain", False):
        return
    drain = state or DRAIN
    handle_exit = Server.handle_exit
    on_tick = Server.on_tick

    def handle_exit_by_draining(self: Any, sig: int, frame: FrameType | None) -> None:
        deadline_s = current().drain_s
        if sig not in (signal.SIGTERM, signal.SIGINT) or deadline_s <= 0:
            return handle_exit(self, sig, frame)
        if drain.draining:  # a second signal: stop now
            log.warning("cacaomap: second signal while draining: stopping now, %d "
                        "request(s) cut", drain.in_flight)
            self._captured_signals.append(sig)
            self.should_exit = self.force_exit = True
            return None
        self._captured_signals.append(sig)
        drain.begin(deadline_s)
        self.cacaomap_drain_logged = False
        return None

    async def tick_and_drain(self: Any, counter: int) -> bool:
        should_exit: bool = await on_tick(self, counter)
        if should_exit or not drain.draining:
            return should_exit
        if not getattr(self, "cacaomap_drain_logged", True):
            self.cacaomap_drain_logged = True
            log.warning("cacaomap: draining (SIGTERM): /readyz and new requests answer "
                        "503; waiting up to %g s for %d request(s) in flight "
                        "(CACAOMAP_DRAIN_S)", drain.deadline_s, drain.in_flight)
        drain.drop_bodies()
        if drain.in_flight == 0:
            log.warning("cacaomap: drained in %.1f s; stopping", drain.elapsed())
            self.should_exit = True
        elif drain.elapsed() >= drain.deadline_s:
            log.warning("cacaomap: drain deadline of %g s passed: stopping, %d "
                        "request(s) cut", drain.deadline_s, drain.in_flight)
            self.should_exit = self.force_exit = True
        return bool(self.should_exit)

    handle_exit_by_draining.cacaomap_drain = True  # type: ignore[attr-defined]
    Server.handle_exit = handle_exit_by_draining  # type: ignore[method-assign]
    Server.on_tick = tick_and_drain  # type: ignore[method-assign]
    forward_second_signals()


def forward_second_signals() -> None:
    """Make ``bentoml serve`` pass a second SIGTERM/SIGINT on to its workers.

    circus (the process manager of ``bentoml serve``) answers the first signal by
    stopping its watchers, which sends SIGTERM to each worker once, and ignores any
    later signal while they stop; a worker draining for ``CACAOMAP_DRAIN_S`` could then
    not be told to stop now. The first signal is handled as before; each later one is
    sent on to every child process (a worker then stops at once).
    """
    import os

    from circus.sighandler import SysHandler

    if getattr(SysHandler.handle_term, "cacaomap_drain", False):
        return
    originals = {"TERM": SysHandler.handle_term, "INT": SysHandler.handle_int}

    def forwarding(name: str) -> Any:
        number = getattr(signal, f"SIG{name}")

        def handle(self: Any) -> None:
            if not getattr(self, "cacaomap_signalled", False):
                self.cacaomap_signalled = True
                return originals[name](self)
            import psutil

            for child in psutil.Process(os.getpid()).children(recursive=True):
                try:
                    child.send_signal(number)
                except psutil.Error:
                    continue
            return None

        handle.cacaomap_drain = True  # type: ignore[attr-defined]
        return handle

    SysHandler.handle_term = forwarding("TERM")  # type: ignore[method-assign]
    SysHandler.handle_int = forwarding("INT")  # type: ignore[method-assign]
