"""/api/jobs: list, inspect, cancel, retry, reprioritise, delete, download."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..engine.decode import measure
from ..engine.errors import InputError
from ..engine.options import OutputFormat
from ..jobs.schemas import CancelResult, Job, RetryResult
from ..jobs.staging import Rejected, stage
from ..jobs.states import ACTIVE, JobStatus
from ..jobs.times import TIME_FORM, InvalidTime, parse_time
from .deps import AppSettings, Limit, Offset, Page, Service
from .downloads import content_disposition, download_name, render
from .errors import ApiError
from .stored import read_all, stored_response
from .uploads import UploadRoute, form_options

router = APIRouter(prefix="/api/jobs", tags=["jobs"], route_class=UploadRoute)


class PriorityChange(BaseModel):
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    """New priority (higher runs first)."""
    front: bool = False
    """Move to the front of the queue instead."""


TimeQuery = Annotated[
    str | None,
    Query(max_length=64, description=f"Created at or after / before: {TIME_FORM}"),
]


def _time(field: str, text: str | None) -> datetime | None:
    """A query time read as analytics reads its ``since`` (422 naming the field otherwise)."""
    if text is None:
        return None
    try:
        return parse_time(field, text.strip())
    except InvalidTime as exc:
        raise ApiError(422, f"invalid_{field}", str(exc)) from None


@router.get("", response_model=Page[Job])
def list_jobs(
    service: Service,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    batch_id: str | None = None,
    session_id: str | None = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    q: Annotated[str | None, Query(max_length=200, description="File name contains")] = None,
    include_superseded: bool = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[Job]:
    items, total = service.list_jobs(
        status=status, batch_id=batch_id, session_id=session_id,
        since=_time("since", since), until=_time("until", until),
        q=q, include_superseded=include_superseded, limit=limit, offset=offset,
    )  # fmt: skip
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, service: Service) -> Job:
    return service.get_job(job_id)


@router.post("/{job_id}/cancel", response_model=CancelResult)
def cancel_job(job_id: str, service: Service) -> CancelResult:
    return service.cancel_job(job_id)


@router.post("/{job_id}/retry", response_model=RetryResult, status_code=201)
def retry_job(job_id: str, service: Service) -> RetryResult:
    return service.retry_job(job_id)


@router.post("/{job_id}/priority", response_model=Job)
def change_priority(job_id: str, change: PriorityChange, service: Service) -> Job:
    if change.front:
        return service.move_to_front(job_id)
    if change.priority is None:
        raise ApiError(422, "invalid_request", "give 'priority' or 'front': true")
    return service.set_priority(job_id, change.priority)


@router.delete("", response_model=dict[str, int])
def delete_jobs(
    service: Service,
    status: Annotated[list[JobStatus], Query(description="Ended statuses to delete")],
) -> dict[str, int]:
    """Delete every job in the given ended statuses (the history's "clear all")."""
    if any(s in ACTIVE for s in status):
        raise ApiError(
            409, "invalid_transition", "active jobs cannot be bulk-deleted; cancel first"
        )
    return {"deleted": service.delete_jobs(status)}


@router.post("/{job_id}/derive", response_model=Job, status_code=201)
async def derive(
    job_id: str,
    service: Service,
    settings: AppSettings,
    format: Annotated[OutputFormat, Form()] = OutputFormat.PNG,
    background_color: Annotated[str | None, Form(max_length=64)] = None,
    background_blur: Annotated[float, Form(ge=0, le=100)] = 0.0,
    background_image: Annotated[UploadFile | None, File()] = None,
    brightness: Annotated[float, Form(ge=0, le=2, description="Subject, 1 = unchanged")] = 1.0,
    contrast: Annotated[float, Form(ge=0, le=2, description="Subject, 1 = unchanged")] = 1.0,
) -> Job:
    """A new job on the same original with a background and the subject's brightness and
    contrast: the editor's "save as new"."""
    await run_in_threadpool(service.get_job, job_id)
    background = None
    if background_image is not None and background_image.filename:
        staged = await run_in_threadpool(
            stage, background_image.file, background_image.filename,
            settings.data_dir / "staging", settings.max_upload_bytes,
        )  # fmt: skip
        if isinstance(staged, Rejected):
            raise ApiError(staged.status, staged.code, staged.message)
        try:  # refused now, as a photo would be by its worker, not after it queued a job
            await run_in_threadpool(
                measure, Path(staged.path), name=staged.file_name,
                max_pixels=settings.max_image_pixels,
            )  # fmt: skip
        except InputError as exc:
            Path(staged.path).unlink(missing_ok=True)
            raise ApiError(422, exc.code, f"background image {exc}") from None
        background = await run_in_threadpool(service.files.add_background, Path(staged.path))
    options = form_options(
        format=format, background_color=background_color,
        background_image=background, background_blur=background_blur,
        brightness=brightness, contrast=contrast,
    )  # fmt: skip
    return await run_in_threadpool(service.derive_job, job_id, options)


@router.delete("/{job_id}", status_code=204)
def delete_job(job_id: str, service: Service) -> Response:
    service.delete_job(job_id)
    return Response(status_code=204)


@router.get("/{job_id}/original", response_class=FileResponse)
def original(job_id: str, service: Service) -> Response:
    """The uploaded image, typed by what its stored bytes are (never by a row's claim)."""
    job = service.get_job(job_id)
    key, _ = service.job_files(job_id)
    media_type = service.files.image_type(key)
    if media_type is None:
        raise ApiError(410, "gone", f"the original of {job.file_name} is no longer stored")
    headers = {"Content-Disposition": content_disposition(job.file_name)}
    return stored_response(service.files.storage, key, media_type, headers)


@router.get("/{job_id}/result", response_class=Response)
async def result(
    job_id: str,
    service: Service,
    settings: AppSettings,
    format: OutputFormat | None = None,
    bg: Annotated[str | None, Query(max_length=64, description="Background colour")] = None,
) -> Response:
    job = await run_in_threadpool(service.get_job, job_id)
    _, key = await run_in_threadpool(service.job_files, job_id)
    if job.status != "completed" or key is None or job.result is None:
        raise ApiError(409, "not_ready", f"{job.file_name} has no result (it is {job.status})")
    storage = service.files.storage
    if not await run_in_threadpool(storage.exists, key):
        raise ApiError(410, "gone", f"the result of {job.file_name} is no longer stored")
    stored = OutputFormat(job.result.format)
    wanted = format or stored
    name = download_name(job.file_name, wanted)
    headers = {"Content-Disposition": content_disposition(name)}
    if wanted is stored and bg is None:
        return stored_response(storage, key, stored.media_type, headers)
    data = await run_in_threadpool(read_all, storage, key)
    data = await run_in_threadpool(render, data, stored, wanted, bg, settings.max_image_pixels)
    return Response(data, media_type=wanted.media_type, headers=headers)
