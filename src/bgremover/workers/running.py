"""One run of one work item, wherever the worker is: fetch by key, remove, store by key.

Shared by the local worker processes and the Celery workers, so both turn every outcome
into the same single final report.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path

from PIL import Image
from pydantic import ValidationError

from ..engine import (
    Cancelled,
    CancelToken,
    EngineError,
    ModelError,
    Removal,
    RemoveOptions,
    Stage,
)
from ..engine.errors import OutputError
from ..engine.png import write_png
from ..engine.remover import MaskMismatch
from ..engine.stages import stage_label
from ..engine.video.probe import is_clip
from ..logs import bound
from ..storage import Storage, StorageError, outage_reason
from ..storage.faults import errno_reason
from ..storage.files import FileStore
from .base import Failed, Finished, Lost, Report, StageProgress, Stopped, WorkItem
from .chunks import ChunkSharing
from .clips import clip_limits, run_clip, still_item
from .removers import Removers

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05
"""Within one stage, send progress at most this often; the event bus coalesces further."""


def run_context(item: WorkItem | None, worker: str) -> AbstractContextManager[None]:
    """Every line logged inside (in this thread) names the run: its job, batch and
    dispatch ids and ``worker`` ("local-1 (pid 4242)"), in whichever process it runs."""
    if item is None:
        return nullcontext()
    return bound(
        job_id=item.job_id, batch_id=item.batch_id, dispatch_id=item.dispatch_id, worker=worker
    )


def run_item(
    item: WorkItem,
    removers: Removers,
    storage: Storage,
    scratch: Path,
    *,
    progress: ProgressReports | None = None,
    cancel: CancelToken | None = None,
    chunks: ChunkSharing | None = None,
) -> Report:
    """Run ``item`` and return its final report: Finished, Failed (the image's fault),
    Stopped, or Lost when the store failed under it. The model is the one the item's
    options name (``removers`` loads it if needed). Files not in a local
    folder are copied through ``scratch``; the result is stored under its key. A long clip
    is shared out in chunks when ``chunks`` is given (a Celery worker). Says in the
    log when it starts and how it ended (within the caller's ``run_context``)."""
    started = time.monotonic()
    log.info("run started")
    report = _run(item, removers, storage, scratch, progress, cancel, chunks)
    log.info("run ended: %s in %.2f s", _outcome(report), time.monotonic() - started)
    return report


def _outcome(report: Report) -> str:
    if isinstance(report, Finished):
        return "completed"
    if isinstance(report, Failed):
        return f"failed ({report.code})"
    if isinstance(report, Lost):
        return f"lost ({report.reason})"
    return "stopped"


def _run(
    item: WorkItem,
    removers: Removers,
    storage: Storage,
    scratch: Path,
    progress: ProgressReports | None,
    cancel: CancelToken | None,
    chunks: ChunkSharing | None,
) -> Report:
    job_id, dispatch_id = item.job_id, item.dispatch_id
    if cancel is not None and cancel.cancelled:
        return Stopped(job_id, dispatch_id)
    try:
        # Its name and sha256 (``remover.model_name``, ``model_sha256``) identify the weights
        # this job's mask comes from.
        remover = removers.get(item.options.get("model"))
    except ModelError as err:
        return Failed(job_id, dispatch_id, code=err.code, message=err.message)
    # Messages name the stored file by its hash; the job service puts the user's name back.
    name = item.original_key.rsplit("/", 1)[-1]
    if "background_image" in item.options:  # files come by storage key, never by path
        return Failed(
            job_id, dispatch_id, code="invalid_options",
            message=f"{name}: a background image is named by its storage key, not a path",
        )  # fmt: skip
    local_source: Path | None = None
    try:
        with ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=scratch)))
            local_source = stack.enter_context(storage.readable(item.original_key, folder))
            if is_clip(local_source):
                limits = clip_limits(removers.settings)
                send = progress.send if progress is not None else None
                return run_clip(
                    item, remover, storage, folder, local_source, limits, send=send,
                    cancel=cancel, chunks=chunks,
                )  # fmt: skip
            item = still_item(item)
            options = dict(item.options)
            if item.background_key is not None:
                background = stack.enter_context(storage.readable(item.background_key, folder))
                options["background_image"] = str(background)
            direct = storage.local_path(item.result_key)
            destination = direct or folder / "result"
            if direct is not None:
                direct.parent.mkdir(parents=True, exist_ok=True)
            mask_key = FileStore.mask_key(name, remover.model_identity)
            kept, mask_bytes = None, 0
            if removers.keep_masks:
                kept, mask_bytes = _kept_mask(storage, mask_key, folder)

            def process(mask: Image.Image | None) -> Removal:
                if progress is not None:
                    progress.mask_reused = mask is not None
                return remover.process(
                    local_source,
                    RemoveOptions(**options),
                    destination=destination,
                    progress=progress,
                    cancel=cancel,
                    mask=mask,
                )

            try:
                removal = process(kept)
            except MaskMismatch as exc:
                log.warning("kept mask %s does not fit (%s); running the model", mask_key, exc)
                removal = process(None)
            size = destination.stat().st_size
            if direct is None:
                storage.put(item.result_key, destination)
            if removers.keep_masks and not removal.mask_reused:
                mask_bytes = _keep_mask(storage, mask_key, removal, folder)
    except Exception as exc:
        return _ended_by(exc, item, name, local_source, destination_of(storage, item))
    width, height = removal.size
    return Finished(
        job_id,
        dispatch_id,
        width=width,
        height=height,
        format=removal.format.value,
        bytes=size,
        timings={stage.value: seconds for stage, seconds in removal.timings.items()},
        mask_key=mask_key if mask_bytes else None,
        mask_bytes=mask_bytes,
        mask_reused=removal.mask_reused,
        model=remover.model_name,
        model_sha256=remover.model_sha256,
    )


def _kept_mask(storage: Storage, key: str, folder: Path) -> tuple[Image.Image | None, int]:
    """The model's mask kept under ``key`` and its size in bytes, when it is there and reads
    as an 8-bit PNG; else (None, 0): a missing, corrupt or unreadable entry only means the
    model runs."""
    try:
        with storage.readable(key, folder) as path, Image.open(path, formats=["PNG"]) as image:
            image.load()
            if image.mode != "L":
                raise ValueError(f"a {image.mode} image, not an 8-bit mask")
            return image.copy(), path.stat().st_size
    except FileNotFoundError:
        return None, 0
    except Exception as exc:  # whatever is wrong with it, the model can redo it
        log.warning("kept mask %s is unusable (%s); running the model", key, exc)
        return None, 0


def _keep_mask(storage: Storage, key: str, removal: Removal, folder: Path) -> int:
    """Store the run's model mask under ``key`` (an atomic put: a concurrent writer of the
    same key writes the same bytes); its size, or 0 when the store would not take it (the
    job's result is stored already, so this never fails the job)."""
    if removal.model_mask is None:
        return 0
    path = folder / "mask.png"
    try:
        path.write_bytes(write_png(removal.model_mask))
        size = path.stat().st_size
        storage.put(key, path)
    except Exception as exc:  # a mask not kept is only a later run's loss
        log.warning("could not keep the mask %s (%s)", key, exc)
        return 0
    return size


def destination_of(storage: Storage, item: WorkItem) -> Path | None:
    """The local path the result is written to directly, when the store is a folder."""
    try:
        return storage.local_path(item.result_key)
    except ValueError:
        return None


def _ended_by(
    exc: Exception,
    item: WorkItem,
    name: str,
    local_source: Path | None,
    destination: Path | None,
) -> Stopped | Lost | Failed:
    """The report for a run that raised ``exc``: stopped, lost to a failing dependency (the
    store, the database: the job runs again later), or failed as the image's fault."""
    job_id, dispatch_id = item.job_id, item.dispatch_id
    if isinstance(exc, Cancelled):
        return Stopped(job_id, dispatch_id)
    outage = _outage(exc)
    if outage is not None:
        dependency, reason = outage
        log.warning("job %s: %s (%s); it runs again later", job_id, reason, exc)
        return Lost(job_id, dispatch_id, reason=reason, dependency=dependency)
    if isinstance(exc, EngineError):
        message = exc.message
        if local_source is not None:
            message = message.replace(str(local_source), name)
        if destination is not None:  # the server's own paths are nobody else's business
            message = message.replace(str(destination), item.result_key)
            message = message.replace(str(destination.parent), item.result_key.rsplit("/", 1)[0])
        return Failed(job_id, dispatch_id, code=exc.code, message=message)
    if isinstance(exc, FileNotFoundError):
        return Failed(
            job_id, dispatch_id, code="original_missing",
            message=f"{name}: the stored original is gone; upload the image again",
        )  # fmt: skip
    if isinstance(exc, StorageError):
        log.warning("job %s: %s", job_id, exc)
        return Failed(
            job_id, dispatch_id, code="storage_error",
            message=f"{name}: the file store refused it; the server log has the details",
        )  # fmt: skip
    if isinstance(exc, ValidationError):
        return Failed(
            job_id, dispatch_id, code="invalid_options", message=f"{name}: bad options ({exc})"
        )
    log.error("unexpected error on %s", item.original_key, exc_info=exc)
    return Failed(
        job_id,
        dispatch_id,
        code="internal_error",
        message=f"{name}: unexpected error ({type(exc).__name__}: {exc}); "
        "this is a bug in BG Remover",
    )


def _outage(exc: Exception) -> tuple[str, str] | None:
    """("storage", the reason for people) when ``exc`` says the store failed under the run
    (full, read-only, failing, unreachable) rather than anything about its image. (Reports
    the database cannot take do not end a run: the job service keeps and retries them.)"""
    if isinstance(exc, OutputError):
        reason = errno_reason(exc.errno)
        return ("storage", reason) if reason else None
    if isinstance(exc, EngineError):
        return None
    reason = outage_reason(exc)
    return ("storage", reason) if reason else None


class ProgressReports:
    """Turns the engine's progress into StageProgress reports: every stage change, otherwise
    at most every 50 ms. The AI model stage is named "AI model: reused" while
    ``mask_reused`` says the run was given a kept mask."""

    def __init__(self, item: WorkItem, send: Callable[[StageProgress], None]) -> None:
        self.mask_reused = False
        self._item = item
        self.send = send
        """Sends a report as it is (a clip's frame counts, ``workers.clips``)."""
        self._lock = threading.Lock()
        self._stage: Stage | None = None
        self._sent_at = 0.0

    def __call__(self, stage: Stage, fraction: float) -> None:
        now = time.monotonic()
        # Held while sending too, so reports from two threads cannot overtake each other.
        with self._lock:
            if stage is self._stage and now - self._sent_at < PROGRESS_INTERVAL_S:
                return
            self._stage, self._sent_at = stage, now
            self.send(
                StageProgress(
                    self._item.job_id,
                    self._item.dispatch_id,
                    stage=stage_label(stage, self.mask_reused),
                    fraction=fraction,
                    sent_at=time.time(),
                )
            )
