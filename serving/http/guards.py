"""ASGI guards in front of the service, in order, and the load and error guards.

Each guard is a small ASGI middleware added with ``CacaoMap.add_asgi_middleware``; they
answer before any byte of the body is read, with a JSON ``{"error": ...}`` that names
the problem. :data:`GUARDS` is the order the service adds them in, outermost first:

1. :class:`ErrorShape` (here): every API error is ``{"error": "<what is wrong>"}``, and
   the guards' statuses are listed in ``/docs.json``.
2. :class:`~serving.http.drain.DrainGuard` (503 + ``Retry-After``): while the worker
   drains after ``SIGTERM``, ``/readyz`` and new requests are refused.
3. Who may call (:mod:`serving.http.access_guards`): ``HostGuard`` (400),
   ``OriginGuard`` (403), ``TokenGuard`` (401/403).
4. The body (:mod:`serving.http.body_guards`): ``BodyLimit`` (400/411/413),
   ``MediaTypeGuard`` (415), ``BodyReader`` (408: read whole before it counts).
5. :class:`InFlightLimit` (here, 503 + ``Retry-After``): at most
   ``CACAOMAP_MAX_IN_FLIGHT`` API requests per worker; also adds ``Retry-After`` to
   BentoML's own 503s (the batching queue's "overloaded").

Their settings come from :func:`serving.settings.current` unless given to the
constructor.
"""

from __future__ import annotations

import json
from typing import Any

from serving.http.access_guards import HostGuard, OriginGuard, TokenGuard
from serving.http.asgi import (
    RETRY_AFTER_S,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    is_public,
    send_error,
)
from serving.http.body_guards import ROUTE_MEDIA_TYPES, BodyLimit, BodyReader, MediaTypeGuard
from serving.http.drain import DrainGuard
from serving.settings import current


class InFlightLimit:
    """Shed load: at most ``limit`` API requests in flight, then 503 with Retry-After."""

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        """Wrap ``app``; ``limit`` defaults to ``CACAOMAP_MAX_IN_FLIGHT`` (64)."""
        self.app = app
        self.limit = limit if limit is not None else current().max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count API requests; refuse past the limit; add Retry-After to any 503."""
        if scope["type"] != "http" or is_public(scope):
            return await self.app(scope, receive, send)
        retry = (b"retry-after", str(RETRY_AFTER_S).encode())
        if self.in_flight >= self.limit:
            return await send_error(
                send, 503, f"overloaded: {self.in_flight} requests in flight (limit "
                f"{self.limit}, CACAOMAP_MAX_IN_FLIGHT); retry after {RETRY_AFTER_S} s",
                [retry])

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (429, 503):
                message["headers"] = [*message.get("headers", []), retry]
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, send_with_retry_after)
        finally:
            self.in_flight -= 1


def error_message(payload: Any) -> str:
    """One readable sentence from BentoML's error bodies (lists, pydantic details)."""
    if isinstance(payload, list):
        return "; ".join(error_message(item) for item in payload) or "bad request"
    if not isinstance(payload, dict):
        return str(payload)
    detail = payload.get("detail")
    if isinstance(detail, list) and detail:
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", [])) or "body"
                parts.append(f"{where}: {item.get('msg', item)}")
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(payload.get("error") or detail or payload)


#: Responses the guards add to every API operation of the OpenAPI document.
GUARD_RESPONSES = {
    "401": "Missing or wrong API token (CACAOMAP_API_TOKEN)",
    "403": "Cross-origin browser request, or reached off loopback with no API token",
    "408": "Body stalled (CACAOMAP_BODY_TIMEOUT_S)",
    "411": "Body without Content-Length",
    "413": "Body over CACAOMAP_MAX_UPLOAD_MB",
    "415": "Media type the route does not take",
    "503": "Overloaded (CACAOMAP_MAX_IN_FLIGHT), or shutting down; see Retry-After",
}


#: BentoML's text for any 5xx raised in an API (it hides their messages).
BENTOML_HIDDEN = "An unexpected error has occurred"
#: What a 503 of the service means (a full queue of its work, BentoML's overload).
BUSY = (f"the service is busy: a queue of its work is full or it is overloaded; retry "
        f"after {RETRY_AFTER_S} s")


class ErrorShape:
    """One error shape, ``{"error": "<what is wrong>"}``; guard statuses in the docs.

    BentoML answers validation errors as ``{"error", "detail": [...]}`` and its own
    exceptions as a one-element list, neither matching the schema it publishes.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite JSON error bodies of API routes; extend the OpenAPI document."""
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or (path not in ROUTE_MEDIA_TYPES and path != "/docs.json"):
            return await self.app(scope, receive, send)
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                rewrite = (message["status"] >= 400 or path == "/docs.json") and any(
                    k.lower() == b"content-type" and v.startswith(b"application/json")
                    for k, v in message.get("headers", []))
                if not rewrite:
                    return await send(message)
                start = message
                return None
            if not start:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = self._rewrite(path, b"".join(chunks), int(start["status"]))
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers,
                                             (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

    @staticmethod
    def _rewrite(path: str, body: bytes, status: int = 400) -> bytes:
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if status == 503 and BENTOML_HIDDEN in json.dumps(payload):
            # BentoML hides every 5xx message; a 503 of the service says it is busy
            return json.dumps({"error": BUSY}).encode()
        if path == "/docs.json":
            for item in payload.get("paths", {}).values():
                for operation in item.values():
                    if isinstance(operation, dict) and "x-bentoml-name" in operation:
                        for code, text in GUARD_RESPONSES.items():
                            operation["responses"].setdefault(code, {"description": text})
            return json.dumps(payload).encode()
        return json.dumps({"error": error_message(payload)}).encode()


#: The guards in the order the service adds them, outermost first.
GUARDS = (ErrorShape, DrainGuard, HostGuard, OriginGuard, TokenGuard, BodyLimit, MediaTypeGuard,
          BodyReader, InFlightLimit)
