"""Access token: required for every API and event request (all but the health check) and for
``/metrics`` when the server has one (it must when it listens beyond this machine). Clients send
``Authorization: Bearer <token>``. A browser cannot add that header to an EventSource, an
``<img>`` or a download link, so those URLs alone may carry ``?token=``; or the browser logs in
once (``POST /api/login`` with the header) and gets a cookie that serves the same purpose.

The cookie is a random value per login, with an expiry, known to this deployment's database
only as a key derived from it and the token (``jobs/logins.py``): the browser also sends it to
every other app on the same host (cookies ignore ports), and there it is worth nothing after
a logout, after its lifetime, after a token change, and on any other server at any time. Its
name carries the port the browser sees, so two servers on one host keep theirs apart.

Wrong tokens are counted per client address (``throttle.py``): an address that guessed too
often gets 429 without its token being looked at, so it cannot even learn a right guess.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..jobs.logins import LoginStore
from .errors import error_body
from .throttle import FailureThrottle

# Where a header is impossible: the event stream, images and downloads.
URL_TOKEN_PATHS = re.compile(r"^/api/(events|jobs/[^/]+/(original|result)|batches/[^/]+/archive)$")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
PROBES = frozenset({"/api/health/live", "/api/health/ready"})
"""Answer without the token, as ``/api/health`` does: an orchestrator has none to send."""
AUTH_STATE = "bgremover_auth"
"""The request state key that says how a request proved itself: "token" or "login:<key>"."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def requester(connection: HTTPConnection) -> str:
    """Who sent the request, for people ("paused by"): "token", "login:<key prefix>" (a
    browser login; the prefix tells logins apart, it opens nothing), "cli" (the command
    line against a server without a token) or "local"."""
    auth = str(getattr(connection.state, AUTH_STATE, "") or "")
    if auth.startswith("login:"):
        return auth[:14]
    if auth:
        return auth
    agent = connection.headers.get("user-agent", "")
    return "cli" if agent.startswith(CLI_AGENT) else "local"


CLI_AGENT = "bgremover-cli"
"""The ``User-Agent`` the command line sends to a server."""


def cookie_name(scope: Scope) -> str:
    """``bgremover_auth_<port>``, the port as the browser sees it (its ``Host``), so every
    process behind one address reads the same cookie and servers on other ports others."""
    host = Headers(scope=scope).get("host", "")
    _, colon, port = host.rpartition(":")
    if not (colon and port.isdigit() and len(port) <= 5):
        port = "443" if scope.get("scheme") == "https" else "80"
    return f"bgremover_auth_{port}"


def login_cookie(scope: Scope, value: str, max_age: int) -> str:
    """The ``Set-Cookie`` value for a login (``max_age=0`` with an empty value clears it):
    HttpOnly, SameSite=Strict, and Secure when the request came over https (directly, or
    from a trusted proxy's ``X-Forwarded-Proto``)."""
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return (
        f"{cookie_name(scope)}={value}; Max-Age={max_age}; Path=/; HttpOnly; "
        f"SameSite=Strict{secure}"
    )


def login_key(token: str, value: str) -> str:
    """The database's key for a cookie value: useless without the token, and different
    under another token, so a token change ends every login."""
    return hmac.new(token.encode(), value.encode(), hashlib.sha256).hexdigest()


class TokenMiddleware:
    """Plain ASGI (not BaseHTTPMiddleware), so streamed responses pass through untouched."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        assert settings.token, "TokenMiddleware needs a token"
        self.app = app
        self._token = settings.token
        self._throttle = FailureThrottle(
            settings.auth_max_failures, settings.auth_failure_window.total_seconds()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        public = path == "/api/health" or path in PROBES
        if not (path.startswith("/api/") or path == "/metrics") or public:
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        address = scope["client"][0] if scope.get("client") else None
        given = self._given_token(connection)
        wait = self._throttle.retry_after(address)
        if wait is None and given is not None and self._is_token(given):
            scope.setdefault("state", {})[AUTH_STATE] = "token"
            await self.app(scope, receive, send)
            return
        # A wrong token is refused and counted even beside a valid login cookie: else a
        # logged-in client could test guesses of the token (``/api/login``) unthrottled.
        key = await self._login(connection) if given is None else None
        if key is not None:
            scope.setdefault("state", {})[AUTH_STATE] = f"login:{key}"
            await self.app(scope, receive, send)
            return
        if wait is not None:
            response = JSONResponse(
                error_body(
                    "too_many_failures",
                    "Too many wrong access tokens from this address; wait before trying again.",
                ),
                429,
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        else:
            if given is not None:
                self._throttle.failed(address)
            response = JSONResponse(
                error_body(
                    "unauthorized",
                    "This server needs an access token: send 'Authorization: Bearer <token>'.",
                ),
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)

    async def _login(self, connection: HTTPConnection) -> str | None:
        """The key of the live login this request's cookie names, if any."""
        value = connection.cookies.get(cookie_name(connection.scope), "")
        if not _COOKIE_VALUE.fullmatch(value):
            return None
        key = login_key(self._token, value)
        logins: LoginStore = connection.scope["app"].state.system.logins
        alive = await run_in_threadpool(logins.alive, key, datetime.now(UTC))
        return key if alive else None

    @staticmethod
    def _given_token(connection: HTTPConnection) -> str | None:
        header = connection.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        if connection.scope["method"] in ("GET", "HEAD") and URL_TOKEN_PATHS.match(
            connection.scope["path"]
        ):
            return connection.query_params.get("token")
        return None

    def _is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token.encode())
