"""Who may talk to this server from a browser, as Jupyter Server decides it.

* ``HostGuard``: the ``Host`` header must name this server (localhost, a loopback address,
  the bound address or ``BGREMOVER_ALLOWED_HOSTS``). A page on ``evil.example`` whose DNS
  name is re-bound to 127.0.0.1 sends ``Host: evil.example`` and gets nothing.
* ``SameOriginGuard``: a request that changes something must prove it comes from our own
  page: a foreign ``Origin`` or a cross-site ``Sec-Fetch-Site`` is refused, and it must carry
  ``X-BGRemover-Request`` (or ``Authorization``), which no other site can add without a
  CORS preflight this server never approves. Scripts and the CLI just send the header.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body

UI_HEADER = "x-bgremover-request"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})


def host_name(host_header: str) -> str:
    """``Example.com:8000`` → ``example.com``; ``[::1]:8000`` → ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostGuard:
    """Refuses requests whose ``Host`` is not one of this server's names (DNS rebinding)."""

    def __init__(self, app: ASGIApp, *, bound: str, allowed: list[str]) -> None:
        self.app = app
        self._any = "*" in allowed
        self._names = {"localhost", host_name(bound), *(host_name(a) for a in allowed)}
        self._any_ip = bound.strip() in _WILDCARD_BINDS

    def allows(self, host: str) -> bool:
        name = host_name(host)
        if self._any or name in self._names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        # An IP literal cannot be re-bound: only someone who typed it gets here.
        return address.is_loopback or self._any_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host")
            if host is not None and not self.allows(host):
                response = JSONResponse(
                    error_body(
                        "forbidden_host",
                        f"this server does not answer to the host name {host_name(host)!r}; "
                        "add it to BGREMOVER_ALLOWED_HOSTS if it is really this server",
                    ),
                    403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SameOriginGuard:
    """Refuses state-changing requests that do not prove they come from our own page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            problem = self._problem(Headers(scope=scope))
            if problem is not None:
                response = JSONResponse(error_body("cross_origin", problem), 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _problem(headers: Headers) -> str | None:
        origin = headers.get("origin")
        if (
            origin is not None
            and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
        ):
            return f"requests from another site ({origin}) may not change anything here"
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return "requests from another site may not change anything here"
        if UI_HEADER not in headers and "authorization" not in headers:
            return (
                "send the header 'X-BGRemover-Request: 1' with requests that change something "
                "(the web UI does; it shows the request comes from this server's own page)"
            )
        return None
