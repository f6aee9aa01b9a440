"""ASGI basics the guards share: the types, one header, public paths, a JSON error."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths any caller may reach (health, metrics, the OpenAPI schema, docs).
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/",
                          "/docs"})
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


def header(scope: Scope, name: bytes) -> str | None:
    """The value of a request header, if the request has it."""
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def is_public(scope: Scope) -> bool:
    """Whether a request is open to every caller (no token, no body guards).

    Health, metrics, docs, and *reading* the page and its results (capability URLs);
    what writes (``POST /ui/...``) is not.
    """
    path = str(scope.get("path", ""))
    if path in PUBLIC_PATHS or path.startswith("/static_content"):
        return True
    return path.startswith("/ui") and str(scope.get("method", "GET")).upper() in (
        "GET", "HEAD")
