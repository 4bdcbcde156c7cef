"""/api/batches: upload, manual batches, list, inspect, cancel, pause, resume, retry, ZIP
archive."""

from __future__ import annotations

import shutil
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from zipstream import ZipStream

from ..engine.options import OutputFormat
from ..jobs.names import Name, clean_text
from ..jobs.presets import PresetOptions, PresetStore, UnknownPreset
from ..jobs.schemas import Batch, BatchCreated, CancelResult, RetryResult, Upload
from ..jobs.staging import Rejected, stage
from ..jobs.states import JobStatus
from ..webhooks.guard import MAX_URL_LENGTH
from .deps import AppSettings, Limit, Offset, Page, Presets, Service
from .downloads import archive_name, content_disposition, download_name
from .errors import ApiError, error_body
from .routes_webhooks import checked_url
from .stored import chunks
from .uploads import UploadRoute, check_model, preset_options

router = APIRouter(prefix="/api/batches", tags=["batches"], route_class=UploadRoute)


class ManualBatch(BaseModel):
    name: Name


class UploadResult(BatchCreated):
    rejected: list[dict[str, object]] = Field(default_factory=list)
    """Files refused before becoming jobs (too large, not an image), each with its error."""


@router.post("", status_code=201, response_model=UploadResult,
             responses={413: {"description": "Every file too large"},
                        415: {"description": "No file is a supported image"},
                        422: {"description": "Invalid options or an unknown preset"}})  # fmt: skip
async def upload(
    service: Service,
    presets: Presets,
    settings: AppSettings,
    files: Annotated[list[UploadFile], File(description="Images (many)")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    preset: Annotated[
        str | None, Form(max_length=64, description="Start from this preset's options")
    ] = None,
    priority: Annotated[int | None, Form(ge=-1000, le=1000, description="Default 0")] = None,
    batch_id: Annotated[str | None, Form(max_length=64)] = None,
    format: Annotated[OutputFormat | None, Form(description="Default png")] = None,
    background_color: Annotated[
        str | None, Form(max_length=64, description="none: no colour (clears a preset's)")
    ] = None,
    alpha_matting: Annotated[bool | None, Form()] = None,
    refine_foreground: Annotated[
        bool | None, Form(description="Clean edge colours (the subject's own, not the wall's)")
    ] = None,
    post_process_mask: Annotated[bool | None, Form()] = None,
    temporal_smoothing: Annotated[
        bool | None, Form(description="Clips: steady the masks between frames")
    ] = None,
    model: Annotated[
        str | None,
        Form(max_length=64, description="A model of GET /api/models; default: the server's"),
    ] = None,
    callback_url: Annotated[
        str | None,
        Form(
            max_length=MAX_URL_LENGTH,
            description="Webhook for this batch's events (see `callback`)",
        ),
    ] = None,
) -> JSONResponse:
    """Each upload becomes a batch (auto-named) unless ``batch_id`` names a manual batch.
    Files that are not images or are too large are refused one by one; the rest run.
    Options given here override those of ``preset``; what neither sets has its default.
    With ``callback_url``, every job and batch event of this batch (``job.completed``,
    ``job.failed``, ``job.cancelled``, ``batch.completed``, ``batch.failed``,
    ``batch.cancelled``) goes there, signed with the ``callback.secret`` of the answer."""
    name = clean_text(name) or None
    if callback_url is not None:
        callback_url = await run_in_threadpool(checked_url, callback_url, settings)
    chosen = await run_in_threadpool(_preset_options, presets, preset)
    options, priority = preset_options(
        chosen, format=format, background_color=background_color, priority=priority,
        alpha_matting=alpha_matting, refine_foreground=refine_foreground,
        post_process_mask=post_process_mask, temporal_smoothing=temporal_smoothing,
        model=model,
    )  # fmt: skip
    if options.model is not None:
        await run_in_threadpool(check_model, settings, options.model)
    if len(files) > settings.max_files_per_upload:
        raise ApiError(413, "too_many_files", f"at most {settings.max_files_per_upload} files")
    staging = settings.data_dir / "staging" / uuid.uuid4().hex
    accepted: list[Upload] = []
    rejected: list[Rejected] = []
    try:
        for file in files:
            outcome = await run_in_threadpool(
                stage, file.file, file.filename, staging, settings.max_upload_bytes
            )
            (accepted if isinstance(outcome, Upload) else rejected).append(outcome)  # type: ignore[arg-type]
            await file.close()
        if not accepted:
            status = 413 if any(r.status == 413 for r in rejected) else 415
            first = rejected[0] if rejected else Rejected("", 415, "no_files", "no files uploaded")
            return JSONResponse(
                error_body(first.code, first.message, rejected=[r.as_json() for r in rejected]),
                status,
            )
        created = await run_in_threadpool(
            lambda: service.create_batch(
                accepted,
                name=name,
                priority=priority,
                options=options,
                batch_id=batch_id,
                callback_url=callback_url,
            )
        )
    finally:
        await run_in_threadpool(shutil.rmtree, staging, ignore_errors=True)
    body = UploadResult(
        batch=created.batch, jobs=created.jobs, callback=created.callback,
        rejected=[r.as_json() for r in rejected],
    )  # fmt: skip
    return JSONResponse(body.model_dump(mode="json"), 201)


def _preset_options(presets: PresetStore, name: str | None) -> PresetOptions:
    if name is None:
        return PresetOptions()
    try:
        return presets.get(name)
    except UnknownPreset as exc:
        raise ApiError(422, "unknown_preset", str(exc)) from None


@router.post("/manual", status_code=201, response_model=Batch)
def create_manual(body: ManualBatch, service: Service) -> Batch:
    return service.create_manual_batch(body.name)


@router.get("", response_model=Page[Batch])
def list_batches(
    service: Service,
    session_id: str | None = None,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[Batch]:
    items, total = service.list_batches(
        session_id=session_id, status=status, limit=limit, offset=offset
    )
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{batch_id}", response_model=Batch)
def get_batch(batch_id: str, service: Service) -> Batch:
    return service.get_batch(batch_id)


@router.post("/{batch_id}/cancel", response_model=CancelResult)
def cancel_batch(batch_id: str, service: Service) -> CancelResult:
    return service.cancel_batch(batch_id)


@router.post("/{batch_id}/pause", response_model=Batch)
def pause_batch(batch_id: str, service: Service) -> Batch:
    """Start none of the batch's pending jobs until resumed (in any process, across
    restarts); its running jobs finish."""
    return service.pause_batch(batch_id)


@router.post("/{batch_id}/resume", response_model=Batch)
def resume_batch(batch_id: str, service: Service) -> Batch:
    return service.resume_batch(batch_id)


@router.post("/{batch_id}/retry", response_model=RetryResult, status_code=201)
def retry_batch(batch_id: str, service: Service) -> RetryResult:
    return service.retry_batch(batch_id)


@router.get("/{batch_id}/archive", response_class=StreamingResponse)
def archive(batch_id: str, service: Service) -> StreamingResponse:
    """Every completed result of the batch as a ZIP, streamed file by file."""
    batch = service.get_batch(batch_id)
    jobs, _ = service.list_jobs(batch_id=batch_id, status=["completed"], limit=100_000)
    if not jobs:
        raise ApiError(409, "not_ready", f"batch {batch.name!r} has no completed results yet")
    stream = ZipStream(sized=False)
    storage = service.files.storage
    used: set[str] = set()
    for job in reversed(jobs):
        _, key = service.job_files(job.id)
        if key is None or job.result is None or not storage.exists(key):
            continue
        name = download_name(job.file_name, OutputFormat(job.result.format))
        stem, dot, ext = name.rpartition(".")
        counter = 2
        while name in used:
            name, counter = f"{stem} ({counter}){dot}{ext}", counter + 1
        used.add(name)
        local = storage.local_path(key)
        if local is not None:
            stream.add_path(str(local), arcname=name)
        else:
            stream.add(chunks(storage, key), arcname=name)
    return StreamingResponse(
        stream, media_type="application/zip",
        headers={"Content-Disposition": content_disposition(archive_name(batch.name))},
    )  # fmt: skip
