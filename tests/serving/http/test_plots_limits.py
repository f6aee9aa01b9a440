"""Caps of ``/plots`` apply before the work they cap, not after it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from serving.http.plots_api import PlotsRequestError, check_request
from serving.settings import Settings


def test_the_evidence_cap_is_checked_before_any_plot_is_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, all plots were checked, then the request refused for its evidence."""
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("plots were checked before the evidence cap applied")

    monkeypatch.setattr("serving.plots.check.check_plots", must_not_run)
    point = {"type": "Feature", "properties": {"Area": 1},
             "geometry": {"type": "Point", "coordinates": [-76.0, -8.0]}}
    body = json.dumps({"type": "FeatureCollection", "features": [point] * 4}).encode()
    store = SimpleNamespace(meta={}, lineage={})
    with pytest.raises(PlotsRequestError, match="evidence is drawn for at most 3 plots"):
        check_request(body, store, Settings(max_evidence=3), True, 4.0)  # type: ignore[arg-type]


def test_a_json_body_has_a_limit_far_below_the_upload_limit() -> None:
    """Before, every route, JSON included, shared the 2 GiB body limit."""
    import asyncio

    from serving.http.body_guards import BodyLimit

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def status(kind: bytes, length: int) -> int:
        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "method": "POST", "path": "/plots", "headers": [
            (b"content-type", kind), (b"content-length", str(length).encode())]}
        guard = BodyLimit(app, max_bytes=2 * 2**30, max_json_bytes=128 * 2**20)
        asyncio.run(guard(scope, receive, send))  # type: ignore[arg-type]
        return int(sent[0]["status"])  # type: ignore[call-overload]

    assert status(b"application/geo+json", 200 * 2**20) == 413
    assert status(b"application/json", 100 * 2**20) == 200
    assert status(b"multipart/form-data; boundary=x", 200 * 2**20) == 200  # files spool
    assert Settings().max_json_bytes < Settings().max_upload_bytes / 10


def test_bodies_being_received_count_before_a_byte_is_spooled() -> None:
    """Before, any number of large uploads could spool to disk at once, uncounted."""
    import asyncio

    from serving.http.body_guards import BodyReader
    from tests.serving.http.test_drain import _call, _ok, _scope, _whole_body

    reader = BodyReader(_ok, idle_timeout_s=30, max_spooling=2)
    release = asyncio.Event()

    async def stalled() -> dict[str, object]:
        await release.wait()
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def scenario() -> tuple[list[int], tuple[int, dict[bytes, bytes]], int]:
        big = 8 * 2**20  # over SPOOL_BYTES: spooled to disk
        slow = [asyncio.ensure_future(_call(reader, _scope("/plots", big), stalled))
                for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await _call(reader, _scope("/plots", big), _whole_body)  # a third, at once
        small = await _call(reader, _scope("/plots", 2), _whole_body)  # never shut out
        assert small[0] == 200
        release.set()
        done = await asyncio.gather(*slow)
        after = await _call(reader, _scope("/plots", 2), _whole_body)
        return [status for status, _ in done], refused, after[0]

    slow, refused, after = asyncio.run(scenario())
    assert slow == [200, 200] and after == 200 and reader.spooling == 0
    assert refused[0] == 503 and refused[1][b"retry-after"] == b"1"
