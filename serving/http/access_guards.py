"""Who may call: allowed hosts, same-site browsers, the bearer token (or loopback only).

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
"""

from __future__ import annotations

import hmac
import ipaddress

from serving.http.asgi import ASGIApp, Receive, Scope, Send, header, is_public, send_error
from serving.settings import current

#: Headers a reverse proxy adds: without a token, such a request is refused (403).
PROXY_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")

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
        host = (header(scope, b"host") or "").lower()
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
        if scope["type"] != "http" or is_public(scope):
            return await self.app(scope, receive, send)
        if not self.token:
            forwarded = next((h.decode() for h in PROXY_HEADERS
                              if header(scope, h) is not None), None)
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
        given = header(scope, b"authorization") or ""
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), self.token.encode()):
            return await send_error(
                send, 401, "missing or wrong API token: send 'Authorization: Bearer "
                "<token>'", [(b"www-authenticate", b'Bearer realm="cacaomap"')])
        return await self.app(scope, receive, send)


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
        if scope["type"] != "http" or is_public(scope):
            return await self.app(scope, receive, send)
        origin = header(scope, b"origin")
        site = (header(scope, b"sec-fetch-site") or "").lower()
        host = (header(scope, b"host") or "").lower()
        own = {f"http://{host}", f"https://{host}"}
        if (origin is not None and origin.lower() not in own) or site in (
                "cross-site", "same-site"):
            return await send_error(
                send, 403, f"cross-origin request refused (Origin {origin!r}, "
                f"Sec-Fetch-Site {site or 'absent'!r}): the API answers its own map page "
                "and clients that are not browsers")
        return await self.app(scope, receive, send)
