"""What an operator sees of a worker's runtime: the execution provider, in three places.

- ``/readyz`` answers, once ready, a JSON body ``{"ready": true, "provider": ...,
  "model": ..., "version": ...}`` (BentoML's own body is empty) (:class:`ReadyzBody`);
- ``/metrics`` has ``cacaomap_execution_provider{provider=..., model=...} 1``
  (:func:`record_runtime`);
- ``/model`` (the service) adds ``provider`` to the contract.

:func:`check_providers` runs before any worker starts: a required provider
(``CACAOMAP_PROVIDERS``) that this ONNX Runtime lacks, or that falls back to the CPU
when a session starts, stops ``bentoml serve`` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Runtime:
    """What this worker serves on (set once its model is loaded)."""

    provider: str | None = None
    model: str | None = None
    version: str | None = None


#: This worker's runtime.
RUNTIME = Runtime()
_GAUGE: Any = None


def record_runtime(provider: str, model: str, version: str) -> None:
    """Remember the provider in use and publish it as a Prometheus gauge."""
    global _GAUGE
    import bentoml

    RUNTIME.provider, RUNTIME.model, RUNTIME.version = provider, model, version
    if _GAUGE is None:
        _GAUGE = bentoml.metrics.Gauge(
            name="cacaomap_execution_provider",
            documentation="1 for the ONNX Runtime execution provider the model runs on",
            labelnames=["provider", "model"])
    _GAUGE.labels(provider=provider, model=f"{model} {version}").set(1)


def check_providers(onnx_path: Path) -> None:
    """Refuse a required provider that cannot be used (see the module docstring).

    Raises:
        serving.inference.session.ProviderError: Naming the missing provider.
    """
    from serving.inference.session import create_session, required_provider

    required = required_provider()
    if required is not None and required != "CPUExecutionProvider":
        create_session(onnx_path)  # raises if it starts on another provider


class ReadyzBody:
    """Answer a ready ``/readyz`` with the runtime as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Replace the body of a 200 from ``/readyz``."""
        if scope["type"] != "http" or scope.get("path") != "/readyz":
            return await self.app(scope, receive, send)
        ready = False

        async def rewrite(message: Message) -> None:
            nonlocal ready
            if message["type"] == "http.response.start":
                ready = message["status"] == 200
                if not ready:
                    return await send(message)
                return None
            if not ready:
                return await send(message)
            if message.get("more_body"):
                return None
            body = json.dumps({"ready": True, "provider": RUNTIME.provider,
                               "model": RUNTIME.model, "version": RUNTIME.version}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)
        return None
