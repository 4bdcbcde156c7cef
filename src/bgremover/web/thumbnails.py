"""GET /api/jobs/{id}/thumbnail: small WebP previews of originals and results for the UI's
cards, sidebar and history.

What a thumbnail may cost is bounded whatever is asked: a source is rendered only at a few
sizes (``engine.thumbnail.SIZES``), kept in a cache bounded in bytes, and any other size is
made from the next cached one up. Renders take one of ``thumbnail_renders`` slots, so their
decoded sources (144 MB for a 36 MP PNG) are in memory a few at a time; a request that
finds no slot within ``thumbnail_wait`` gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..engine.errors import InputError
from ..engine.thumbnail import SIZES, render_size, thumbnail
from ..storage.files import FileStore
from .deps import AppSettings, Service
from .errors import ApiError, error_body

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

# The stored files never change (originals are named by content, results by job), so a
# browser may keep a thumbnail for a day without asking again.
_CACHE_CONTROL = "private, max-age=86400"
_RETRY_AFTER_S = 5


class Busy(Exception):
    """Every render slot stayed taken for the whole wait."""


class RenderSlots:
    """At most ``count`` renders at once in this process; others wait up to ``wait_s``."""

    def __init__(self, count: int, wait_s: float) -> None:
        self._free = asyncio.Semaphore(count)
        self._wait_s = wait_s

    @asynccontextmanager
    async def taken(self) -> AsyncIterator[None]:
        """Hold a slot for the block; ``Busy`` when none came free in time."""
        if not self._free.locked():
            await self._free.acquire()  # free: taken without waiting
        elif self._wait_s <= 0:
            raise Busy
        else:
            try:
                async with asyncio.timeout(self._wait_s):
                    await self._free.acquire()
            except TimeoutError:
                raise Busy from None
        try:
            yield
        finally:
            self._free.release()


def _slots(request: Request) -> RenderSlots:
    """This app's render slots, made on first use (the event loop runs one request at a
    time between awaits, so two cannot both make them)."""
    state = request.app.state
    if not hasattr(state, "thumbnail_slots"):
        settings: Settings = state.settings
        state.thumbnail_slots = RenderSlots(
            settings.thumbnail_renders, settings.thumbnail_wait.total_seconds()
        )
    slots: RenderSlots = state.thumbnail_slots
    return slots


@router.get(
    "/{job_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/webp": {}}, "description": "A WebP thumbnail"},
        503: {"description": "Every render slot is busy; try again after Retry-After seconds"},
    },
)
async def job_thumbnail(
    request: Request,
    job_id: str,
    service: Service,
    settings: AppSettings,
    size: Annotated[int, Query(ge=16, le=1024, description="Longest side in pixels")] = 256,
    of: Annotated[
        Literal["original", "result"], Query(description="The uploaded image or its result")
    ] = "original",
) -> Response:
    """A WebP of the original or the result whose longest side is at most ``size``. The
    sizes in ``SIZES`` are served from the cache as rendered; any other is made from the
    next larger one, so asking for many sizes costs no more decodes of the source."""
    job = await run_in_threadpool(service.get_job, job_id)
    original, result = await run_in_threadpool(service.job_files, job_id)
    key = original
    if of == "result":
        if result is None:
            raise ApiError(409, "not_ready", f"{job.file_name} has no result (it is {job.status})")
        key = result
    data = None
    if size in SIZES:
        data = await run_in_threadpool(service.files.thumbnails.read, key, size)
    if data is None:
        try:
            async with _slots(request).taken():
                data = await run_in_threadpool(
                    thumbnail_of, service.files, key, size,
                    max_pixels=settings.max_image_pixels, scratch=settings.data_dir / "scratch",
                )  # fmt: skip
        except Busy:
            busy = f"every thumbnail render is in use; try {job.file_name} again shortly"
            return JSONResponse(
                error_body("busy", busy), 503, headers={"Retry-After": str(_RETRY_AFTER_S)}
            )
        except FileNotFoundError:
            gone = f"the {of} of {job.file_name} is no longer stored"
            raise ApiError(410, "gone", gone) from None
        except InputError as exc:
            raise ApiError(
                422, exc.code, f"{job.file_name}: no thumbnail, the {of} cannot be read"
            ) from None
    return Response(data, media_type="image/webp", headers={"Cache-Control": _CACHE_CONTROL})


def thumbnail_of(files: FileStore, key: str, size: int, *, max_pixels: int, scratch: Path) -> bytes:
    """The thumbnail of the stored file ``key`` at ``size``: its render at ``render_size``
    from the cache (rendered from the source and cached when missing), made smaller when
    ``size`` is not one of ``SIZES``."""
    rendered = render_size(size)
    data = files.thumbnails.read(key, rendered)
    if data is None:
        scratch.mkdir(parents=True, exist_ok=True)
        with files.storage.readable(key, scratch) as source:
            data = thumbnail(source, rendered, max_pixels=max_pixels)
        files.thumbnails.write(key, rendered, data)
    return data if size == rendered else thumbnail(data, size, max_pixels=max_pixels)
