"""The drain guard in process: refusals while draining, bodies dropped, uvicorn hooks."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

import pytest

from serving.http import body_guards, drain
from serving.http.asgi import Message, Scope
from serving.http.body_guards import BodyReader
from serving.http.drain import DrainGuard, DrainState
from tests.service_helpers import REPO


def _scope(path: str, length: int = 0) -> Scope:
    headers = [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json")]
    if length:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


async def _ok(scope: Scope, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _call(app: Any, scope: Scope, receive: Any) -> tuple[int, dict[bytes, bytes]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"]), dict(sent[0]["headers"])


async def _whole_body() -> Message:
    return {"type": "http.request", "body": b"{}", "more_body": False}


def test_new_requests_and_readyz_are_refused_once_draining() -> None:
    state = DrainState()
    guard = DrainGuard(_ok, state)
    assert asyncio.run(_call(guard, _scope("/classify_tiles"), _whole_body))[0] == 200
    state.begin(30)
    for path in ("/classify_tiles", "/readyz", "/plots", "/ui/"):
        status, headers = asyncio.run(_call(guard, _scope(path), _whole_body))
        assert status == 503 and headers[b"retry-after"] == b"1", path
        assert headers[b"connection"] == b"close"
    for path in ("/livez", "/metrics"):  # the instance is alive while it drains
        assert asyncio.run(_call(guard, _scope(path), _whole_body))[0] == 200
    assert state.in_flight == 0


def test_a_body_being_received_is_dropped_when_the_drain_begins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    state = DrainState()
    monkeypatch.setattr(body_guards, "DRAIN", state)
    reader = DrainGuard(BodyReader(_ok, idle_timeout_s=60), state)

    async def scenario() -> tuple[int, dict[bytes, bytes]]:
        stalled = asyncio.Event()

        async def one_byte_then_nothing() -> Message:
            if not stalled.is_set():
                stalled.set()
                return {"type": "http.request", "body": b"{", "more_body": True}
            await asyncio.sleep(3600)  # an abandoned upload
            raise AssertionError("unreachable")

        call = asyncio.ensure_future(_call(reader, _scope("/classify_tiles", 100),
                                           one_byte_then_nothing))
        await stalled.wait()
        await asyncio.sleep(0.05)
        assert state.in_flight == 1 and len(state.receiving) == 1
        state.begin(30)
        state.drop_bodies()  # what the uvicorn tick does once the signal has come
        return await asyncio.wait_for(call, 5)

    status, headers = asyncio.run(scenario())
    assert status == 503 and headers[b"retry-after"] == b"1"
    assert state.in_flight == 0 and not state.receiving


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A function installing the hooks on a fresh drain state (undone afterwards)."""
    from uvicorn import Config
    from uvicorn.server import Server

    original = (Server.handle_exit, Server.on_tick)
    monkeypatch.setattr(drain, "current", lambda: type("S", (), {"drain_s": 30.0})())

    def install() -> tuple[DrainState, Any]:
        Server.handle_exit, Server.on_tick = original  # type: ignore[method-assign]
        state = DrainState()
        drain.install(state)
        return state, Server(Config(app=_ok))

    yield install
    Server.handle_exit, Server.on_tick = original  # type: ignore[method-assign]


def test_uvicorn_stops_once_nothing_is_in_flight(hooked: Any) -> None:
    state, server = hooked()
    server.handle_exit(signal.SIGTERM, None)
    assert state.draining and not server.should_exit  # draining, not stopping
    state.in_flight = 1
    assert asyncio.run(server.on_tick(1)) is False and not server.should_exit
    state.in_flight = 0
    assert asyncio.run(server.on_tick(2)) is True and not server.force_exit
    assert server._captured_signals == [signal.SIGTERM]  # re-raised by uvicorn at exit


def test_a_second_signal_or_the_deadline_stops_at_once(hooked: Any) -> None:
    state, server = hooked()
    server.handle_exit(signal.SIGTERM, None)
    state.in_flight = 3
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and server.force_exit
    state, server = hooked()
    server.handle_exit(signal.SIGTERM, None)
    state.in_flight = 3
    assert state.started is not None
    state.started -= 31  # the 30 s have passed
    assert asyncio.run(server.on_tick(1)) is True and server.force_exit


def test_the_wrapped_uvicorn_code_is_unchanged() -> None:
    code = ("from serving.http import drain; from serving.http.bentoml_fixes import "
            "upstream_digest as d; print([d(m, a) == h for m, a, h in drain.UPSTREAM])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == str([True] * len(drain.UPSTREAM)), (
        "uvicorn changed Server.handle_exit or Server.on_tick: re-check "
        "serving/http/drain.py, then update its pinned digests")
