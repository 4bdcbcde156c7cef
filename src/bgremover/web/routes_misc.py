"""/api/sessions, /api/stats, /api/export, /api/import, /api/health."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..jobs.exchange import QueueState
from ..jobs.schemas import ImportResult, Session, Stats, WorkerStatus
from ..jobs.states import NotFound
from .deps import AppSettings, Limit, Offset, Page, Service, get_settings, get_system
from .errors import ApiError
from .probes import public_check

router = APIRouter(prefix="/api", tags=["sessions and state"])


@router.get("/sessions", response_model=Page[Session])
def list_sessions(service: Service, limit: Limit = 50, offset: Offset = 0) -> Page[Session]:
    items, total = service.list_sessions(limit=limit, offset=offset)
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/sessions/{session_id}", response_model=Session)
def get_session(session_id: str, service: Service) -> Session:
    return service.get_session(session_id)


@router.get("/stats")
def stats(request: Request, service: Service) -> Stats:
    """Counts, estimate quality, and the worker processes with the job each runs."""
    workers = []
    for worker in get_system(request).executor.workers():
        file_name = None
        if worker.job_id is not None:
            with contextlib.suppress(NotFound):
                file_name = service.get_job(worker.job_id).file_name
        workers.append(
            WorkerStatus(
                name=worker.name,
                host=worker.host,
                pid=worker.pid,
                since=datetime.fromtimestamp(worker.started_at, UTC),
                job_id=worker.job_id,
                file_name=file_name,
                helps=worker.helps,
            )
        )
    device = get_system(request).executor.device()
    return service.stats().model_copy(update={"workers": workers, "device": device})


@router.get("/config")
def config(request: Request, settings: AppSettings) -> dict[str, Any]:
    """What the UI needs to know about this server."""
    return {
        "notification_duration": settings.notification_duration.total_seconds(),
        "progress_update_interval": settings.progress_update_interval.total_seconds(),
        "auto_group_time_window": settings.auto_group_time_window.total_seconds(),
        "max_concurrent_jobs": settings.max_concurrent_jobs,
        "device": get_system(request).executor.device(),
        "max_upload_bytes": settings.max_upload_bytes,
        "dev": settings.dev,
    }


@router.get("/models")
def models(settings: AppSettings) -> list[dict[str, Any]]:
    """The models a job may choose on this server (upload field ``model``, presets): the
    default, built-in models already downloaded, and those added with ``bgremover models
    add``. ``default`` marks the one a job without ``model`` runs."""
    from ..engine.models import ModelStore, registered_models

    store = ModelStore(settings.models_dir)
    offered = [
        {"name": name, "family": cls.family, "description": cls.description,
         "size_bytes": cls.size_bytes, "default": name == settings.model}
        for name, cls in sorted(registered_models().items())
        if cls.source is not None and (name == settings.model or store.path_for(cls).is_file())
    ]  # fmt: skip
    offered += [
        {"name": name, "family": entry.family, "description": entry.description,
         "size_bytes": entry.size_bytes, "default": name == settings.model}
        for name, entry in sorted(store.catalog.entries().items())
    ]  # fmt: skip
    return offered


@router.get("/export")
def export_state(service: Service) -> JSONResponse:
    return JSONResponse(
        service.export_state(),
        headers={"Content-Disposition": 'attachment; filename="bgremover-queue.json"'},
    )


@router.post("/import", response_model=ImportResult)
def import_state(service: Service, state: QueueState) -> ImportResult:
    """Add a queue exported by ``GET /api/export`` (rows whose ids are new). The files are
    not in the JSON: jobs whose files are missing from this server's store come in failed."""
    try:
        return service.import_state(state)
    except ValueError as exc:
        raise ApiError(422, "invalid_import", f"not a BG Remover queue export: {exc}") from None


@router.get("/health")
def health(request: Request) -> JSONResponse:
    """ "ok" with each dependency's state and the number of workers; 503 when the
    database does not answer (nothing works without it), "degraded" when another
    dependency does not. ``dependencies`` says, per dependency, whether this process has
    it, since when and the last error (only without a token, when health is for
    this machine alone): a loss its own work met shows here
    while it lasts, even between checks."""
    system = get_system(request)
    checks: dict[str, Any] = system.health()
    dependencies = system.service.dependencies.states()
    failing = [name for name, state in checks.items() if not _works(state)]
    failing += [
        name for name, state in dependencies.items() if not state.ok and name not in failing
    ]
    try:
        workers = len(system.executor.workers())
    except Exception:  # the registry is in Redis, which the checks above name
        workers = 0
    status = "ok" if not failing else "degraded"
    states = {name: state.as_json() for name, state in dependencies.items()}
    if get_settings(request).token:
        # Health answers without the token: what went wrong (hosts, ports, paths in a
        # driver's message) stays in the log; storage's own reason is written for people.
        checks = {name: public_check(state) for name, state in checks.items()}
        states = {name: {**state, "error": None} for name, state in states.items()}
    body = {
        "status": status,
        **checks,
        "dependencies": states,
        "workers": workers,
        "device": system.executor.device(),
    }
    return JSONResponse(body, status_code=503 if "database" in failing else 200)


def _works(state: Any) -> bool:
    """A dependency's entry says it works: "ok", or ``{"ok": true, ...}``."""
    return bool(state.get("ok")) if isinstance(state, dict) else state == "ok"
