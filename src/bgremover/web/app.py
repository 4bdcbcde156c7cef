"""The FastAPI application factory: everything comes from ``Settings``; nothing is global."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..config import Settings
from ..system import JobSystem
from . import (
    errors,
    events,
    metrics,
    probes,
    routes_analytics,
    routes_auth,
    routes_batches,
    routes_jobs,
    routes_misc,
    routes_presets,
    routes_queue,
    routes_webhooks,
    thumbnails,
)
from .auth import TokenMiddleware, is_loopback
from .bodies import BodyLimits, body_limits
from .headers import SecurityHeaders
from .origin import HostGuard, SameOriginGuard
from .stream_limits import StreamLimits
from .tokens import weak_token_message

STATIC = Path(__file__).resolve().parent / "static"


class InsecureBinding(Exception):
    """Listening beyond this machine without an access token."""


def create_app(settings: Settings, *, system: JobSystem | None = None) -> FastAPI:
    """The web app. It starts (and on shutdown stops) its own job system unless one is given.

    Refuses to build when ``settings.host`` is not a loopback address and no token is set,
    or when the token is weak.
    """
    if not is_loopback(settings.host) and not settings.token:
        raise InsecureBinding(
            f"refusing to listen on {settings.host} without an access token: set "
            "BGREMOVER_TOKEN (or --token) so only people who have it can use this server; "
            "`bgremover token` prints a new one"
        )
    if settings.token and (weak := weak_token_message(settings.token)):
        raise InsecureBinding(weak)
    owned = system is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            app.state.system = await run_in_threadpool(lambda: JobSystem(settings).start())
        app.state.phase = "serving"
        try:
            yield
        finally:
            app.state.phase = "stopping"
            if owned:
                await run_in_threadpool(app.state.system.stop)

    app = FastAPI(
        title="BG Remover",
        version=__version__,
        description="Background removal jobs: upload, follow live progress, download results.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.phase = "starting"  # then "serving", "stopping": see ``probes.ready``
    app.state.streams = events.StreamCount()
    app.state.metrics = metrics.metrics_registry(app.state)
    if system is not None:
        app.state.system = system
    errors.install(app)
    routers = (
        routes_batches, routes_jobs, routes_queue, routes_misc, routes_presets, routes_analytics,
        routes_auth, routes_webhooks,
    )  # fmt: skip
    for module in (*routers, probes, events, thumbnails, metrics):
        app.include_router(module.router)
    # Added innermost first: headers on every answer, then Host, token, same-origin proof,
    # then the limits, which count only requests that passed those.
    app.add_middleware(BodyLimits, limits=body_limits(settings))
    app.add_middleware(
        StreamLimits,
        path="/api/events",
        total=settings.event_stream_limit,
        per_client=settings.max_event_streams_per_client,
    )
    app.add_middleware(SameOriginGuard)
    if settings.token:
        app.add_middleware(TokenMiddleware, settings=settings)
    app.add_middleware(HostGuard, bound=settings.host, allowed=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = STATIC / "index.html"
        return FileResponse(page) if page.exists() else RedirectResponse("/docs")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app
