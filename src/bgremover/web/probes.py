"""Probes for a container orchestrator (Kubernetes' liveness and readiness probes, a load
balancer's health check). They answer without the token, as ``/api/health`` does, and so
never show what went wrong when a token is set (hosts, ports and paths in a driver's
message stay in the log): only which dependency is "unavailable".
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..system import JobSystem
from .deps import get_settings

router = APIRouter(prefix="/api/health", tags=["health"])


class Liveness(BaseModel):
    status: Literal["live"] = "live"


class Readiness(BaseModel):
    status: Literal["ready", "starting", "stopping", "unavailable"] = Field(
        description="starting: the app's start-up (database, worker processes, model) has "
        "not finished; stopping: it is shutting down; unavailable: a dependency does not "
        "answer"
    )
    dependencies: dict[str, str] = Field(
        default_factory=dict,
        description='The database, and in the cluster Redis: "ok", else what is wrong '
        '("unavailable" when the server has a token)',
    )


@router.get("/live", response_model=Liveness)
async def live() -> Liveness:
    """200 while this process answers: its event loop runs (the route runs on it, not in a
    thread). A liveness probe that fails means the process is stuck: restart it. It says
    nothing about the database or Redis, whose outages a restart would not cure."""
    return Liveness()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Starting, stopping or a dependency lost"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 when this process can serve: its start-up has finished and the database (and,
    in the cluster, Redis) answers; else 503 with the reason. A readiness probe that fails
    takes the process out of the load balancer until it passes again."""
    phase = getattr(request.app.state, "phase", "starting")
    system: JobSystem | None = getattr(request.app.state, "system", None)
    if phase != "serving" or system is None:
        return _answer(Readiness(status="stopping" if phase == "stopping" else "starting"), 503)
    checks = await run_in_threadpool(system.readiness)
    if get_settings(request).token:
        checks = {name: public_check(state) for name, state in checks.items()}
    ok = all(state == "ok" for state in checks.values())
    answer = Readiness(status="ready" if ok else "unavailable", dependencies=checks)
    return _answer(answer, 200 if ok else 503)


def public_check(state: Any) -> Any:
    """A check as anyone may see it: "ok" or "unavailable" (a storage entry, which says
    what is wrong in words for people, as it is)."""
    return state if isinstance(state, dict) or state == "ok" else "unavailable"


def _answer(readiness: Readiness, status_code: int) -> JSONResponse:
    return JSONResponse(readiness.model_dump(), status_code=status_code)
