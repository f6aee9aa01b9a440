"""The body of a request: its media type, its size, and reading it whole before the work.

- :class:`MediaTypeGuard` (415): each route takes JSON or multipart, never a pickle,
  and a body must declare its media type.
- :class:`BodyLimit` (400/411/413): ``Content-Length`` is required for a body, may not
  exceed ``CACAOMAP_MAX_UPLOAD_MB``, and may not come with ``Transfer-Encoding``.
- :class:`BodyReader` (408): the body is read whole, with at most
  ``CACAOMAP_BODY_TIMEOUT_S`` between chunks, before the request counts as in flight
  (a body still being received when a drain begins is dropped: 503).
"""

from __future__ import annotations

import tempfile
from typing import Any

from serving import json_bodies
from serving.http.asgi import (
    RETRY_AFTER_S,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    is_public,
    send_error,
)
from serving.http.drain import DRAIN, draining_message, refuse
from serving.settings import current

#: Bodies up to this size are held in memory while read; larger ones go to a temp file.
SPOOL_BYTES = 4 * 2**20
#: Chunks a spooled body is handed to the app in.
REPLAY_CHUNK = 2**20
#: Media types each API route accepts (anything else: 415). Pickle is never accepted.
ROUTE_MEDIA_TYPES = {
    "/classify_tiles": ("application/json",),
    "/model": ("application/json",),
    "/classify_scene": ("multipart/form-data",),
    "/classify_scene_summary": ("multipart/form-data",),
    "/baseline": ("multipart/form-data",),
    "/analyze": ("multipart/form-data",),
    "/analyze_scene": ("multipart/form-data",),
    "/plots": ("application/json", "application/geo+json", "multipart/form-data"),
    "/store": ("application/json",),
    "/reference_layer": ("application/json",),
}


def has_body(scope: Scope) -> bool:
    """Whether a request declares a body."""
    length = header(scope, b"content-length")
    return header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0"))


class MediaTypeGuard:
    """Refuse bodies of a media type the route does not take (415), pickle above all."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``Content-Type`` against :data:`ROUTE_MEDIA_TYPES`."""
        accepted = ROUTE_MEDIA_TYPES.get(str(scope.get("path", "")))
        if scope["type"] != "http" or accepted is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        declared = header(scope, b"content-type")
        if declared is None:
            if has_body(scope):  # what a no-cors cross-site fetch with a Blob sends
                return await send_error(
                    send, 415, f"{scope['path']} takes {' or '.join(accepted)}; the body "
                    "has no Content-Type")
            declared = accepted[0]
        given = declared.split(";")[0].strip().lower()
        if given not in accepted:
            return await send_error(
                send, 415, f"{scope['path']} takes {' or '.join(accepted)}; got {given!r}"
                + (" (pickled payloads are never accepted)" if "pickle" in given else ""))
        return await self.app(scope, receive, send)


class BodyLimit:
    """Refuse bodies over the limit (413) or of unknown length (411), before reading.

    A JSON body (parsed whole in memory) has a limit of its own, far below the upload
    limit of multipart files (spooled to disk): ``CACAOMAP_MAX_JSON_MB``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int | None = None,
                 max_json_bytes: int | None = None) -> None:
        """Wrap ``app`` with the limits (default: the settings' upload and JSON limits)."""
        self.app = app
        self.max_bytes = max_bytes if max_bytes is not None else current().max_upload_bytes
        self.max_json_bytes = (max_json_bytes if max_json_bytes is not None
                               else current().max_json_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``Content-Length`` of requests that carry a body."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = header(scope, b"content-length")
        if header(scope, b"transfer-encoding") is not None:
            # With both headers the body is framed by Transfer-Encoding and the length
            # is a lie the server would only find out after reading everything.
            if length is not None:
                return await send_error(send, 400, "a request may not carry both "
                                        "Content-Length and Transfer-Encoding")
            return await send_error(send, 411, "send the body with a Content-Length "
                                               "(chunked uploads are not accepted)")
        if length is None:
            return await self.app(scope, receive, send)
        if not length.strip().isdigit():
            return await send_error(send, 400, f"bad Content-Length {length!r}")
        if int(length) > self.max_bytes:
            return await send_error(
                send, 413, f"request body of {int(length):,} bytes is over the limit of "
                f"{self.max_bytes:,} bytes (CACAOMAP_MAX_UPLOAD_MB)")
        kind = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if kind.endswith("json") and int(length) > self.max_json_bytes:
            return await send_error(
                send, 413, f"JSON body of {int(length):,} bytes is over the limit of "
                f"{self.max_json_bytes:,} bytes for JSON (CACAOMAP_MAX_JSON_MB); send "
                "large inputs as files (multipart)")
        return await self.app(scope, receive, send)


class BodyReader:
    """Read a request's whole body before the request counts as in flight (408 if stalled).

    A client that sends headers for a large body and then stalls would otherwise hold
    one of the ``CACAOMAP_MAX_IN_FLIGHT`` slots until the server's timeout, and 70 of
    them shut every other caller out. Here the body is read first, into memory up to
    :data:`SPOOL_BYTES` and to a temporary file beyond, with at most
    ``CACAOMAP_BODY_TIMEOUT_S`` seconds between two received chunks; a stalled body gets
    408 and never reaches the service. The body is then replayed to the app.

    Bodies large enough to be spooled to disk (over :data:`SPOOL_BYTES`) count against
    a limit of their own before a byte is written (``CACAOMAP_MAX_IN_FLIGHT``, the same
    number): past it, 503 with ``Retry-After`` at once, so concurrent uploads cannot
    fill the disk without bound. Small bodies are not counted: stalled uploads never
    shut out a small request.
    """

    def __init__(self, app: ASGIApp, idle_timeout_s: float | None = None,
                 max_spooling: int | None = None) -> None:
        """Wrap ``app`` (defaults: ``CACAOMAP_BODY_TIMEOUT_S``, ``CACAOMAP_MAX_IN_FLIGHT``)."""
        self.app = app
        self.idle_timeout_s = (idle_timeout_s if idle_timeout_s is not None
                               else current().body_timeout_s)
        self.max_spooling = (max_spooling if max_spooling is not None
                             else current().max_in_flight)
        self.spooling = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Spool the body of API requests that carry one, then call the app."""
        if scope["type"] != "http" or is_public(scope) or not has_body(scope):
            return await self.app(scope, receive, send)

        import anyio

        length = header(scope, b"content-length") or "0"
        if not (length.isdigit() and int(length) > SPOOL_BYTES):
            return await self._spooled(scope, receive, send, anyio)
        if self.spooling >= self.max_spooling:
            return await send_error(
                send, 503, f"{self.spooling} large request bodies are being received, the "
                f"most this worker spools at once (CACAOMAP_MAX_IN_FLIGHT); retry after "
                f"{RETRY_AFTER_S} s", [(b"retry-after", str(RETRY_AFTER_S).encode())])
        self.spooling += 1
        try:
            return await self._spooled(scope, receive, send, anyio)
        finally:
            self.spooling -= 1

    async def _spooled(self, scope: Scope, receive: Receive, send: Send, anyio: Any
                       ) -> None:
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as body:
            while True:
                with anyio.move_on_after(self.idle_timeout_s) as waited:
                    DRAIN.receiving.add(waited)
                    try:
                        if DRAIN.draining:  # shutting down: no new work, not even this
                            waited.cancel()
                        message = await receive()
                    finally:
                        DRAIN.receiving.discard(waited)
                if DRAIN.draining and waited.cancel_called:
                    return await refuse(send, draining_message())
                if waited.cancel_called:
                    return await send_error(
                        send, 408, f"the request body stalled: nothing received for "
                        f"{self.idle_timeout_s:g} s (CACAOMAP_BODY_TIMEOUT_S)",
                        [(b"connection", b"close")])
                if message["type"] == "http.disconnect":
                    return None
                body.write(message.get("body", b""))
                if not message.get("more_body"):
                    break
            size = body.tell()
            body.seek(0)
            scope.setdefault("state", {})[BODY_STATE] = (body, size)

            async def replay() -> Message:
                if body.closed or body.tell() >= size:
                    return await receive()  # http.disconnect, when it comes
                chunk = body.read(REPLAY_CHUNK)
                return {"type": "http.request", "body": chunk,
                        "more_body": body.tell() < size}

            if size >= json_bodies.WALK_FROM_BYTES and (
                    header(scope, b"content-type") or "").split(";")[0].strip().endswith("json"):
                # What a large JSON body parses into is freed (by reference counting)
                # when the request ends: with the cyclic collector paused until then,
                # no collection walks those millions of objects, holding every thread.
                with json_bodies.collector_paused():
                    await self.app(scope, replay, send)
            else:
                await self.app(scope, replay, send)
        return None


#: Where :class:`BodyReader` leaves the spooled body in the ASGI scope's state.
BODY_STATE = "cacaomap_body"


def spooled_body(scope: Scope) -> bytes | None:
    """The request body :class:`BodyReader` spooled, as bytes (None if there is none).

    The spool stays open until the app has answered, so a handler can read the bytes
    as the client sent them (e.g. to count the decimals of coordinates).
    """
    held = (scope.get("state") or {}).get(BODY_STATE)
    if held is None:
        return None
    body, size = held
    if body.closed:
        return None
    position = body.tell()
    try:
        body.seek(0)
        data = body.read(size)
    finally:
        body.seek(position)
    return bytes(data)
