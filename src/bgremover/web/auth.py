"""Access token: required for every API and event request when the server listens beyond
this machine. Clients send ``Authorization: Bearer <token>``; EventSource, which cannot set
headers, may pass ``?token=``."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_body


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware), so streamed responses pass through untouched."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "http" and scope["path"].startswith("/api/")
        if guarded and not self._allowed(HTTPConnection(scope)):
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
        await self.app(scope, receive, send)

    def _allowed(self, connection: HTTPConnection) -> bool:
        header = connection.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        else:
            given = connection.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self._token)
