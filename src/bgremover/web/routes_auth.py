"""/api/login and /api/logout: the browser's login cookie (``auth.py`` says why it is safe)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from .auth import AUTH_STATE, login_cookie, login_key
from .deps import AppSettings, get_system
from .errors import ApiError

router = APIRouter(prefix="/api", tags=["auth"])

_NO_TOKEN = "this server has no access token, so there is nothing to log in to or out of"


@router.post("/login", status_code=204, response_class=Response)
def login(request: Request, settings: AppSettings) -> Response:
    """Exchange the access token (``Authorization: Bearer``) for a login cookie that lasts
    ``BGREMOVER_LOGIN_LIFETIME``, for what a browser cannot add a header to: images,
    downloads and the event stream. Every login is a new random value."""
    if not settings.token:
        raise ApiError(409, "no_token", _NO_TOKEN)
    if getattr(request.state, AUTH_STATE, None) != "token":
        raise ApiError(401, "unauthorized", "log in with 'Authorization: Bearer <token>'")
    value = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    lifetime = settings.login_lifetime
    get_system(request).logins.add(login_key(settings.token, value), now, now + lifetime)
    cookie = login_cookie(request.scope, value, int(lifetime.total_seconds()))
    return Response(status_code=204, headers={"Set-Cookie": cookie})


@router.post("/logout", status_code=204, response_class=Response)
def logout(request: Request, settings: AppSettings, everywhere: bool = False) -> Response:
    """End this login and clear its cookie; ``everywhere=true`` ends every login of this
    deployment (all browsers, all web processes)."""
    if not settings.token:
        raise ApiError(409, "no_token", _NO_TOKEN)
    logins = get_system(request).logins
    auth = getattr(request.state, AUTH_STATE, "")
    if everywhere:
        logins.end_all()
    elif auth.startswith("login:"):
        logins.end(auth.removeprefix("login:"))
    return Response(status_code=204, headers={"Set-Cookie": login_cookie(request.scope, "", 0)})
