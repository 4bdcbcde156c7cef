"""GET /api/jobs/{id}/thumbnail: small WebP previews of originals and results for the UI's
cards, sidebar and history, rendered once and then served from a cache in the data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..engine.encode import write_atomic
from ..engine.errors import InputError
from ..engine.thumbnail import thumbnail
from ..jobs.files import FileStore
from .deps import AppSettings, Service
from .errors import ApiError

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

# The stored files never change (originals are named by content, results by job), so a
# browser may keep a thumbnail for a day without asking again.
_CACHE_CONTROL = "private, max-age=86400"


@router.get(
    "/{job_id}/thumbnail",
    response_class=FileResponse,
    responses={200: {"content": {"image/webp": {}}, "description": "A WebP thumbnail"}},
)
async def job_thumbnail(
    job_id: str,
    service: Service,
    settings: AppSettings,
    size: Annotated[int, Query(ge=16, le=1024, description="Longest side in pixels")] = 256,
    of: Annotated[
        Literal["original", "result"], Query(description="The uploaded image or its result")
    ] = "original",
) -> FileResponse:
    """A WebP of the original or the result whose longest side is at most ``size``."""
    job = await run_in_threadpool(service.get_job, job_id)
    original, result = await run_in_threadpool(service.job_files, job_id)
    key = original
    if of == "result":
        if result is None:
            raise ApiError(409, "not_ready", f"{job.file_name} has no result (it is {job.status})")
        key = result
    cached = service.files.thumbnail_path(key, size)
    if not cached.exists():
        try:
            await run_in_threadpool(_render, service.files, key, cached, size, settings)
        except FileNotFoundError:
            gone = f"the {of} of {job.file_name} is no longer stored"
            raise ApiError(410, "gone", gone) from None
        except InputError as exc:
            raise ApiError(
                422, exc.code, f"{job.file_name}: no thumbnail, the {of} cannot be read"
            ) from None
    return FileResponse(cached, media_type="image/webp", headers={"Cache-Control": _CACHE_CONTROL})


def _render(files: FileStore, key: str, cached: Path, size: int, settings: Settings) -> None:
    scratch = settings.data_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    with files.storage.readable(key, scratch) as source:
        data = thumbnail(source, size, max_pixels=settings.max_image_pixels)
    write_atomic(cached, data)
