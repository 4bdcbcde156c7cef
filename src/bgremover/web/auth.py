"""Access token: required for every API and event request (all but the health check) when
the server listens beyond this machine. Clients send ``Authorization: Bearer <token>``. A
browser cannot add that header to an EventSource, an ``<img>`` or a download link, so those
URLs alone may carry ``?token=``; and once a request has shown the token, the answer sets an
HttpOnly, SameSite=Strict cookie that serves the same purpose (and that no other site's
request ever carries)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body

# Where a header is impossible: the event stream, images and downloads.
URL_TOKEN_PATHS = re.compile(r"^/api/(events|jobs/[^/]+/(original|result)|batches/[^/]+/archive)$")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware), so streamed responses pass through untouched."""

    def __init__(self, app: ASGIApp, token: str, port: int) -> None:
        self.app = app
        self._token = token.encode()
        # Cookies ignore ports: the port in the name keeps two servers on one host apart.
        self._cookie_name = f"bgremover_auth_{port}"
        # The cookie holds a value derived from the token, never the token itself.
        self._cookie_value = hmac.new(self._token, b"bgremover-cookie", hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith("/api/") or path == "/api/health":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        if self._has_cookie(connection):
            await self.app(scope, receive, send)
            return
        if not self._has_token(connection):
            response = JSONResponse(
                error_body(
                    "unauthorized",
                    "This server needs an access token: send 'Authorization: Bearer <token>'.",
                ),
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (
            f"{self._cookie_name}={self._cookie_value}; Path=/; HttpOnly; SameSite=Strict{secure}"
        )

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Set-Cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _has_cookie(self, connection: HTTPConnection) -> bool:
        given = connection.cookies.get(self._cookie_name, "")
        return hmac.compare_digest(given.encode(), self._cookie_value.encode())

    def _has_token(self, connection: HTTPConnection) -> bool:
        header = connection.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        elif connection.scope["method"] in ("GET", "HEAD") and URL_TOKEN_PATHS.match(
            connection.scope["path"]
        ):
            given = connection.query_params.get("token", "")
        else:
            return False
        return hmac.compare_digest(given.encode(), self._token)
