"""ASGI guards in front of the service: hosts, token, body size, load, no URL fetching.

Each guard is a small ASGI middleware added with ``CacaoMap.add_asgi_middleware``; they
answer before any byte of the body is read, with a JSON ``{"error": ...}`` that names
the problem:

- :class:`HostGuard` (400): the ``Host`` header must be one of ``CACAOMAP_ALLOWED_HOSTS``
  (default: loopback names), which stops DNS-rebinding pages from reaching a loopback
  service through a browser.
- :class:`OriginGuard` (403): an API request sent by a browser for another site's page
  (a foreign ``Origin``, or ``Sec-Fetch-Site: cross-site``) is refused.
- :class:`TokenGuard` (401/403): with ``CACAOMAP_API_TOKEN`` set, every API route needs
  ``Authorization: Bearer <token>``. Without a token the service answers only requests
  that arrive on a loopback address and carry no proxy header (``Forwarded``,
  ``X-Forwarded-For``, ``X-Real-IP``); anything else gets 403. A proxy on the same host
  makes every caller loopback: ``CACAOMAP_BEHIND_PROXY=on`` then requires a token.
- :class:`BodyLimit` (400/411/413): ``Content-Length`` is required for a body, may not
  exceed ``CACAOMAP_MAX_UPLOAD_MB``, and may not come with ``Transfer-Encoding``.
- :class:`MediaTypeGuard` (415): each route takes JSON or multipart, never a pickle,
  and a body must declare its media type.
- :class:`~serving.http.drain.DrainGuard` (503 + ``Retry-After``): while the worker
  drains after ``SIGTERM``, ``/readyz`` and new requests are refused.
- :class:`BodyReader` (408): the body is read whole, with at most
  ``CACAOMAP_BODY_TIMEOUT_S`` between chunks, before the request counts as in flight
  (a body still being received when a drain begins is dropped: 503).
- :class:`ErrorShape`: every API error is ``{"error": "<what is wrong>"}``, and the
  statuses above are listed in ``/docs.json``.
- :class:`InFlightLimit` (503 + ``Retry-After``): at most ``CACAOMAP_MAX_IN_FLIGHT``
  API requests per worker; also adds ``Retry-After`` to BentoML's own 503s (the
  batching queue's "overloaded").

The service adds :data:`GUARDS` in order, outermost first. Their settings come from
:func:`serving.settings.current` unless given to the constructor.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from serving.http.drain import DRAIN, DrainGuard, draining_message, refuse
from serving.settings import current

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths any caller may reach (health, metrics, the OpenAPI schema, docs).
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/",
                          "/docs"})
#: Headers a reverse proxy adds: without a token, such a request is refused (403).
PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")
#: Bodies up to this size are held in memory while read; larger ones go to a temp file.
SPOOL_BYTES = 4 * 2**20
#: Chunks a spooled body is handed to the app in.
REPLAY_CHUNK = 2**20
#: Seconds a client is asked to wait after a 503.
RETRY_AFTER_S = 1


async def send_error(send: Send, status: int, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with ``{"error": message}`` and the given status."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _is_public(scope: Scope) -> bool:
    path = str(scope.get("path", ""))
    return path in PUBLIC_PATHS or path.startswith(("/ui", "/static_content"))


def is_loopback(address: str) -> bool:
    """Whether an IP address (or ``localhost``) is a loopback address."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


class HostGuard:
    """Refuse requests whose ``Host`` is not an allowed host name (400)."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] | None = None) -> None:
        """Wrap ``app``; ``allowed`` defaults to ``CACAOMAP_ALLOWED_HOSTS`` or loopback."""
        self.app = app
        self.allowed = allowed or current().allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the Host header of HTTP requests."""
        if scope["type"] != "http" or "*" in self.allowed:
            return await self.app(scope, receive, send)
        host = (_header(scope, b"host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in self.allowed:
            return await send_error(
                send, 400, f"Host {host!r} is not allowed; allowed hosts: "
                f"{', '.join(self.allowed)} (set CACAOMAP_ALLOWED_HOSTS)")
        return await self.app(scope, receive, send)


class TokenGuard:
    """Require a bearer token on API routes (401); off loopback, require one at all (403)."""

    def __init__(self, app: ASGIApp, token: str | None = None) -> None:
        """Wrap ``app``; ``token`` defaults to ``CACAOMAP_API_TOKEN`` (none: loopback only)."""
        self.app = app
        self.token = token if token is not None else current().api_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the caller's token, or that the service is reached on loopback."""
        if scope["type"] != "http" or _is_public(scope):
            return await self.app(scope, receive, send)
        if not self.token:
            forwarded = next((h.decode() for h in PROXY_HEADERS
                              if _header(scope, h) is not None), None)
            if forwarded:
                return await send_error(
                    send, 403, f"this request came through a proxy ({forwarded} header), "
                    "so its caller is not known to be local: set CACAOMAP_API_TOKEN (and "
                    "CACAOMAP_BEHIND_PROXY=on)")
            local = (scope.get("server") or ("", 0))[0]
            if local and not is_loopback(str(local)):
                return await send_error(
                    send, 403, f"this service is reachable on {local}, not only on "
                    "loopback: set CACAOMAP_API_TOKEN and send it as "
                    "'Authorization: Bearer <token>'")
            return await self.app(scope, receive, send)
        given = _header(scope, b"authorization") or ""
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), self.token.encode()):
            return await send_error(
                send, 401, "missing or wrong API token: send 'Authorization: Bearer "
                "<token>'", [(b"www-authenticate", b'Bearer realm="cacaomap"')])
        return await self.app(scope, receive, send)


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
}


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0"))


class OriginGuard:
    """Refuse API requests a browser sends on behalf of another site's page (403).

    Browsers send ``Origin`` on every cross-origin request and on same-origin POSTs;
    an API request whose ``Origin`` is not this service's own (``scheme://Host``) or a
    ``Sec-Fetch-Site`` of ``cross-site``/``same-site`` comes from a page the user
    opened elsewhere, which must not drive the service on their loopback. Clients that
    are not browsers send neither header and pass.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Compare ``Origin`` (and ``Sec-Fetch-Site``) with the request's own host."""
        if scope["type"] != "http" or _is_public(scope):
            return await self.app(scope, receive, send)
        origin = _header(scope, b"origin")
        site = (_header(scope, b"sec-fetch-site") or "").lower()
        host = (_header(scope, b"host") or "").lower()
        own = {f"http://{host}", f"https://{host}"}
        if (origin is not None and origin.lower() not in own) or site in (
                "cross-site", "same-site"):
            return await send_error(
                send, 403, f"cross-origin request refused (Origin {origin!r}, "
                f"Sec-Fetch-Site {site or 'absent'!r}): the API answers its own map page "
                "and clients that are not browsers")
        return await self.app(scope, receive, send)


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
        declared = _header(scope, b"content-type")
        if declared is None:
            if _has_body(scope):  # what a no-cors cross-site fetch with a Blob sends
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
    """Refuse bodies over the limit (413) or of unknown length (411), before reading."""

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        """Wrap ``app``; ``max_bytes`` defaults to ``CACAOMAP_MAX_UPLOAD_MB`` (2048 MB)."""
        self.app = app
        self.max_bytes = max_bytes if max_bytes is not None else current().max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``Content-Length`` of requests that carry a body."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if _header(scope, b"transfer-encoding") is not None:
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
        return await self.app(scope, receive, send)


class BodyReader:
    """Read a request's whole body before the request counts as in flight (408 if stalled).

    A client that sends headers for a large body and then stalls would otherwise hold
    one of the ``CACAOMAP_MAX_IN_FLIGHT`` slots until the server's timeout, and 70 of
    them shut every other caller out. Here the body is read first, into memory up to
    :data:`SPOOL_BYTES` and to a temporary file beyond, with at most
    ``CACAOMAP_BODY_TIMEOUT_S`` seconds between two received chunks; a stalled body gets
    408 and never reaches the service. The body is then replayed to the app.
    """

    def __init__(self, app: ASGIApp, idle_timeout_s: float | None = None) -> None:
        """Wrap ``app``; ``idle_timeout_s`` defaults to ``CACAOMAP_BODY_TIMEOUT_S``."""
        self.app = app
        self.idle_timeout_s = (idle_timeout_s if idle_timeout_s is not None
                               else current().body_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Spool the body of API requests that carry one, then call the app."""
        if scope["type"] != "http" or _is_public(scope) or not _has_body(scope):
            return await self.app(scope, receive, send)
        import tempfile

        import anyio

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


class InFlightLimit:
    """Shed load: at most ``limit`` API requests in flight, then 503 with Retry-After."""

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        """Wrap ``app``; ``limit`` defaults to ``CACAOMAP_MAX_IN_FLIGHT`` (64)."""
        self.app = app
        self.limit = limit if limit is not None else current().max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count API requests; refuse past the limit; add Retry-After to any 503."""
        if scope["type"] != "http" or _is_public(scope):
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
            body = self._rewrite(path, b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers,
                                             (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)

    @staticmethod
    def _rewrite(path: str, body: bytes) -> bytes:
        try:
            payload = json.loads(body)
        except ValueError:
            return body
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
