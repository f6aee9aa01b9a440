"""Calling the service from Python: BentoML's own client, tiles in binary, 503s retried.

BentoML's ``SyncHTTPClient``/``AsyncHTTPClient`` work with the service as they are:
``client.classify_tiles(tiles=arr)`` sends a numpy array as nested lists (655,360 JSON
numbers for one 256-px, 10-band tile) and returns the class codes as a ``uint8`` array;
``tiles=encode_tiles(arr)`` sends the binary form through the same client.

:class:`CacaoMapClient` and :class:`AsyncCacaoMapClient` are those clients with two
changes a monitoring system wants:

- a numpy array given as ``tiles`` travels in the binary form
  (:func:`serving.http.tile_payload.encode_tiles`), several times faster;
- a 503 or 429 (overloaded, or an instance draining before it stops) and a refused
  connection are retried after the ``Retry-After`` the service sends, up to ``retries``
  times; any other error is raised at once, as BentoML raises it.

Only ``bentoml``, ``httpx`` and numpy are needed (no ONNX Runtime, no model)::

    from serving.client import CacaoMapClient

    with CacaoMapClient("http://127.0.0.1:3000") as client:
        codes = client.classify_tiles(tiles=tiles)  # (N, tile, tile) uint8
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

import bentoml
import httpx
import numpy as np

from serving.http.tile_payload import encode_tiles

#: Statuses retried after their Retry-After.
RETRIED_STATUSES = frozenset({429, 503})
#: Wait when a refusal carries no (or an unreadable) Retry-After, seconds.
DEFAULT_WAIT_S = 1.0


def retry_after_s(response: httpx.Response | None, max_wait_s: float) -> float:
    """Seconds to wait before the next attempt (``Retry-After`` in seconds, bounded)."""
    raw = response.headers.get("retry-after", "") if response is not None else ""
    try:
        wait = float(raw)
    except ValueError:
        wait = DEFAULT_WAIT_S
    return min(max(wait, 0.0), max_wait_s)


def _binary_tiles_request(client: httpx.Client | httpx.AsyncClient, endpoint: Any,
                          args: Any, kwargs: dict[str, Any], headers: Any
                          ) -> httpx.Request | None:
    """The request of ``classify_tiles`` with an array in the binary form (else None)."""
    if endpoint.name != "classify_tiles" or args or set(kwargs) != {"tiles"}:
        return None
    tiles = kwargs["tiles"]
    if not isinstance(tiles, np.ndarray):
        return None
    body = json.dumps({"tiles": encode_tiles(tiles)}).encode()
    return client.build_request("POST", endpoint.route, content=body, headers={
        **dict(headers or {}), "content-type": "application/json"})


class RetryAfterTransport(httpx.BaseTransport):
    """An httpx transport that retries refusals (503/429, refused connections)."""

    def __init__(self, retries: int, max_wait_s: float) -> None:
        """Retry up to ``retries`` times, waiting at most ``max_wait_s`` each time."""
        self.inner = httpx.HTTPTransport()
        self.retries = retries
        self.max_wait_s = max_wait_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send; on a refusal wait as told and send again."""
        request.read()  # a body sent twice must be replayable
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.inner.handle_request(request)
            except httpx.ConnectError:
                if last:
                    raise
                time.sleep(retry_after_s(None, self.max_wait_s))
                continue
            if response.status_code not in RETRIED_STATUSES or last:
                return response
            response.read()
            response.close()
            time.sleep(retry_after_s(response, self.max_wait_s))
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connections."""
        self.inner.close()


class AsyncRetryAfterTransport(httpx.AsyncBaseTransport):
    """:class:`RetryAfterTransport` for ``httpx.AsyncClient``."""

    def __init__(self, retries: int, max_wait_s: float) -> None:
        """Retry up to ``retries`` times, waiting at most ``max_wait_s`` each time."""
        self.inner = httpx.AsyncHTTPTransport()
        self.retries = retries
        self.max_wait_s = max_wait_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send; on a refusal wait as told and send again."""
        await request.aread()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.ConnectError:
                if last:
                    raise
                await asyncio.sleep(retry_after_s(None, self.max_wait_s))
                continue
            if response.status_code not in RETRIED_STATUSES or last:
                return response
            await response.aread()
            await response.aclose()
            await asyncio.sleep(retry_after_s(response, self.max_wait_s))
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the connections."""
        await self.inner.aclose()


class CacaoMapClient(bentoml.SyncHTTPClient):
    """BentoML's ``SyncHTTPClient``: binary tiles, refusals retried after Retry-After."""

    def __init__(self, url: str, *, retries: int = 5, max_wait_s: float = 30.0,
                 timeout: float = 300.0, **kwargs: Any) -> None:
        """Connect to the service at ``url`` (its ``/schema.json`` is read once).

        Args:
            url: The service, e.g. ``http://127.0.0.1:3000``.
            retries: Attempts after a refusal (503/429, refused connection).
            max_wait_s: Longest wait between two attempts, whatever Retry-After says.
            timeout: Seconds to wait for one answer (a scene takes minutes).
            **kwargs: Passed to ``bentoml.SyncHTTPClient`` (``token``, ...).
        """
        self.retries, self.max_wait_s = retries, max_wait_s
        super().__init__(url, timeout=timeout, **kwargs)

    @functools.cached_property
    def client(self) -> httpx.Client:  # type: ignore[override]
        """The httpx client, with refusals retried."""
        return httpx.Client(base_url=self.url, headers=self.default_headers,
                            timeout=self.timeout, follow_redirects=True,
                            transport=RetryAfterTransport(self.retries, self.max_wait_s))

    def _build_request(self, endpoint: Any, args: Any, kwargs: dict[str, Any],
                       headers: Any) -> httpx.Request:
        return (_binary_tiles_request(self.client, endpoint, args, kwargs, headers)
                or super()._build_request(endpoint, args, kwargs, headers))


class AsyncCacaoMapClient(bentoml.AsyncHTTPClient):
    """BentoML's ``AsyncHTTPClient``: binary tiles, refusals retried after Retry-After."""

    def __init__(self, url: str, *, retries: int = 5, max_wait_s: float = 30.0,
                 timeout: float = 300.0, **kwargs: Any) -> None:
        """Connect to the service at ``url`` (see :class:`CacaoMapClient`)."""
        self.retries, self.max_wait_s = retries, max_wait_s
        super().__init__(url, timeout=timeout, **kwargs)

    @functools.cached_property
    def client(self) -> httpx.AsyncClient:  # type: ignore[override]
        """The httpx client, with refusals retried."""
        return httpx.AsyncClient(
            base_url=self.url, headers=self.default_headers, timeout=self.timeout,
            follow_redirects=True,
            transport=AsyncRetryAfterTransport(self.retries, self.max_wait_s))

    def _build_request(self, endpoint: Any, args: Any, kwargs: dict[str, Any],
                       headers: Any) -> httpx.Request:
        return (_binary_tiles_request(self.client, endpoint, args, kwargs, headers)
                or super()._build_request(endpoint, args, kwargs, headers))
