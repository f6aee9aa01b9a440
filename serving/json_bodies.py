"""JSON request bodies parsed so that other threads keep running meanwhile.

``json.loads`` holds the interpreter lock for the whole parse, and the garbage collector
walks every container built so far as the parse goes: a 60 MB FeatureCollection held
every other thread of the worker, the event loop and ``/livez`` included, for 1.5 s,
however the parse was put in a worker thread. :func:`loads` parses the outer two
levels (the body object and its arrays, e.g. ``features``) element by element, each
element with the C parser, so the lock is given up between elements; and it pauses
the cyclic garbage collector while it builds (JSON makes no cycles: reference counting
frees what it builds). Bodies under :data:`WALK_FROM_BYTES` are parsed by ``json.loads``
as they are. The result and the errors (:class:`json.JSONDecodeError`,
``RecursionError``) are those of ``json.loads``.
"""

from __future__ import annotations

import gc
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Bodies at least this large are parsed element by element.
WALK_FROM_BYTES = 2**20
#: Containers this deep or deeper are parsed whole by the C parser.
WALK_DEPTH = 2
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_paused = 0
_pause_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (process-wide) while any thread is inside."""
    global _paused
    with _pause_lock:
        if _paused == 0 and gc.isenabled():
            gc.disable()
            _paused = 1
        elif _paused:
            _paused += 1
    try:
        yield
    finally:
        with _pause_lock:
            if _paused:
                _paused -= 1
                if _paused == 0:
                    gc.enable()


def loads(data: bytes | bytearray | str, parse_float: Callable[[str], Any] | None = None
          ) -> Any:
    """``json.loads(data, parse_float=parse_float)``, letting other threads run.

    Raises:
        json.JSONDecodeError: Where the text is not JSON (``json.loads``'s message).
        UnicodeDecodeError: Bytes that are not UTF-8/16/32.
        RecursionError: Nesting deeper than the C parser goes.
    """
    if len(data) < WALK_FROM_BYTES:
        return json.loads(data, parse_float=parse_float)
    if isinstance(data, str):
        text = data
    else:
        text = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    decoder = json.JSONDecoder(parse_float=parse_float)
    with collector_paused():
        value, end = _value(text, _skip(text, 0), decoder, 0)
    end = _skip(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _skip(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def _value(text: str, at: int, decoder: json.JSONDecoder, depth: int) -> tuple[Any, int]:
    opener = text[at:at + 1]
    if depth >= WALK_DEPTH or opener not in ("{", "["):
        try:
            return decoder.raw_decode(text, at)
        except StopIteration as err:  # raw_decode's "no value here"
            raise json.JSONDecodeError("Expecting value", text, at) from err
    if opener == "[":
        return _array(text, at, decoder, depth)
    return _object(text, at, decoder, depth)


def _after_element(text: str, at: int, close: str) -> tuple[bool, int]:
    """After an array's or object's element: (closed, where the next thing starts).

    Closed: the position after ``close``; else the next element's, past the comma.
    """
    at = _skip(text, at)
    if text.startswith(close, at):
        return True, at + 1
    if not text.startswith(",", at):
        raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
    return False, _skip(text, at + 1)


def _array(text: str, at: int, decoder: json.JSONDecoder, depth: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    at = _skip(text, at + 1)
    if text.startswith("]", at):
        return items, at + 1
    while True:
        item, at = _value(text, at, decoder, depth + 1)
        items.append(item)
        closed, at = _after_element(text, at, "]")
        if closed:
            return items, at


def _object(text: str, at: int, decoder: json.JSONDecoder, depth: int
            ) -> tuple[dict[str, Any], int]:
    members: dict[str, Any] = {}
    at = _skip(text, at + 1)
    if text.startswith("}", at):
        return members, at + 1
    while True:
        if not text.startswith('"', at):
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, at)
        key, at = decoder.raw_decode(text, at)
        at = _skip(text, at)
        if not text.startswith(":", at):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
        members[key], at = _value(text, _skip(text, at + 1), decoder, depth + 1)
        closed, at = _after_element(text, at, "}")
        if closed:
            return members, at
