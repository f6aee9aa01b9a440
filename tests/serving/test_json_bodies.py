"""Large JSON bodies parse to what ``json.loads`` gives, while other threads keep running."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from serving.json_bodies import WALK_FROM_BYTES, collector_paused, loads

PAD = b" " * WALK_FROM_BYTES  # makes any text large enough to be walked


@pytest.mark.parametrize("text", [
    b'{"type": "FeatureCollection", "features": [{"a": [1, 2.50, {"b": null}]}, [], {}]}',
    b'[1, "two", 3.0e2, true, false, null, {"x": "\\u00e9"}]', b'{"a": 1, "a": 2}',
    b'"just a string"', b"12", '{"é": "ü"}'.encode(), b'{"n": 1e400}',
    b'\xef\xbb\xbf{"bom": 1}',
])
def test_a_walked_body_parses_to_what_json_loads_gives(text: bytes) -> None:
    for parse_float in (None, Decimal):
        assert loads(text + PAD, parse_float) == json.loads(text + PAD,
                                                            parse_float=parse_float)


@pytest.mark.parametrize("text", [
    b'{"a": 1}{"b": 2}', b"[1,", b"", b'{"a" 1}', b"{a: 1}", b"[1 2]", b'{"a": 1,}',
    b"[" * 100_000 + b"]" * 100_000, b'"\xff"',
])
def test_a_walked_body_that_is_not_json_fails_as_json_loads_does(text: bytes) -> None:
    errors = (json.JSONDecodeError, UnicodeDecodeError, RecursionError)
    with pytest.raises(errors) as expected:
        json.loads(text + PAD)
    with pytest.raises(errors) as got:
        loads(text + PAD)
    assert type(got.value) is type(expected.value)


def test_other_threads_run_while_a_large_body_is_parsed() -> None:
    feature = {"type": "Feature", "properties": {"Area": 1.0},
               "geometry": {"type": "Point", "coordinates": [-76.5123456, -8.2123456]}}
    body = json.dumps({"type": "FeatureCollection", "features": [feature] * 100_000})
    ticks: list[float] = []
    done = threading.Event()

    def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            done.wait(0.001)

    def ticks_inside(parse: Callable[[str], Any]) -> tuple[Any, int]:
        """The parse's result, and the ticks well inside it.

        Not at its two edges, where a loaded machine may run the ticker just before or
        after the parse.
        """
        start = time.perf_counter()
        result = parse(body)
        end = time.perf_counter()
        margin = 0.01
        return result, sum(start + margin < t < end - margin for t in list(ticks))

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        _, whole = ticks_inside(json.loads)  # holds the interpreter lock throughout
        parsed, walked = ticks_inside(loads)
    finally:
        done.set()
        ticker.join()
    assert parsed["features"][-1] == feature
    assert whole <= 2 and walked > 10 * max(whole, 1), (whole, walked)


def test_the_collector_is_paused_while_any_caller_is_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # another request, overlapping
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()  # someone else's choice is left as it was
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
