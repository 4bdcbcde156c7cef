"""One run of a clip job, in whichever worker holds it: frames through the model with each
frame's mask checkpointed in the store (a lost run's successor resumes at the next frame),
progress as "frame n of N", the result encoded atomically and stored by key."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import Image

from ..config import Settings
from ..engine import Cancelled, CancelToken, EngineError, RemoveOptions, Remover
from ..engine.errors import OutputError
from ..engine.png import write_png
from ..engine.video.formats import clip_format, still_format
from ..engine.video.probe import ClipInfo, ClipLimits, open_clip
from ..storage import Storage
from ..storage.files import FileStore
from .base import Finished, StageProgress, WorkItem
from .chunks import ChunkSharing, MaskMaker, share_masks

log = logging.getLogger(__name__)

MASKS_SHARE = 0.9
"""A chunked clip's percent given to its masks (the model); its encode pass (compositing
the kept masks and encoding) fills the rest. A frame's model time is most of its cost (the
ISNet frame's AI-model stage against its Mask, Compositing and Saving ones)."""
MEASURED_AFTER = 3
"""Frames after which a run reports its own seconds per frame (the ETA's basis from then)."""


def clip_label(done: int, frames: int) -> str:
    """The stage people see while a clip runs."""
    return f"frame {min(done + 1, frames)} of {frames}"


class FrameMasks:
    """Each frame's model mask in the store, keyed like a photo's kept mask by the
    original's hash and the model, plus the frame's number: a later run of the same clip
    (a retry, the next attempt after a lost worker) finds them."""

    def __init__(self, storage: Storage, content_hash: str, identity: str, folder: Path) -> None:
        self._storage = storage
        self._hash = content_hash
        self._identity = identity
        self._folder = folder

    def key(self, index: int) -> str:
        return FileStore.mask_key(self._hash, f"{self._identity}\0frame {index}")

    def get(self, index: int) -> Image.Image | None:
        try:
            with (
                self._storage.readable(self.key(index), self._folder) as path,
                Image.open(path, formats=["PNG"]) as image,
            ):
                image.load()
                return image.copy() if image.mode == "L" else None
        except FileNotFoundError:
            return None
        except Exception as exc:  # a bad checkpoint only means the model runs again
            log.warning("frame %d's kept mask is unusable (%s); running the model", index, exc)
            return None

    def put(self, index: int, mask: Image.Image) -> None:
        path = self._folder / f"frame-{index}.png"
        try:
            path.write_bytes(write_png(mask))
            self._storage.put(self.key(index), path)
        except Exception as exc:  # not kept: a resume redoes this frame
            log.warning("could not keep frame %d's mask (%s)", index, exc)

    def clear(self, frames: int) -> None:
        """Delete the checkpoints once the result is stored: they served their purpose."""
        for index in range(frames):
            try:
                self._storage.delete(self.key(index))
            except Exception as exc:
                log.warning("could not delete frame %d's mask (%s)", index, exc)


class FrameReports:
    """Turns frame counts into StageProgress reports, with this run's measured seconds per
    frame once ``MEASURED_AFTER`` frames are done. A chunked clip's run reports in two
    passes (``part``): its masks, made across the cluster, then its encode; each frame's
    share of the percent is then split between them, and "frames done" (the stage, the
    pace) counts those shares, so the percent, the frame shown and the ETA only go forward."""

    def __init__(self, item: WorkItem, send: Callable[[StageProgress], None]) -> None:
        self._item = item
        self._send = send
        self._lock = threading.Lock()
        self._first: tuple[float, float] | None = None
        self._part = (0.0, 1.0)

    def part(self, start: float, share: float) -> None:
        """From now on, frame counts fill ``share`` of the percent from ``start``."""
        with self._lock:
            self._part = (start, share)

    def __call__(self, done: int, frames: int) -> None:
        now = time.monotonic()
        with self._lock:
            start, share = self._part
            fraction = start + share * (done / frames if frames else 0.0)
            units = round(fraction * frames, 6)  # frames done, or their worth across passes
            if self._first is None:
                self._first = (units, now)
            start_units, start_at = self._first
            ran = units - start_units
            per_frame = (now - start_at) / ran if ran >= MEASURED_AFTER else None
            self._send(
                StageProgress(
                    self._item.job_id,
                    self._item.dispatch_id,
                    stage=clip_label(int(units + 1e-9), frames),
                    fraction=fraction,
                    sent_at=time.time(),
                    frames=frames,
                    frame_seconds=per_frame,
                )
            )


def run_clip(
    item: WorkItem,
    remover: Remover,
    storage: Storage,
    folder: Path,
    source: Path,
    limits: ClipLimits,
    *,
    send: Callable[[StageProgress], None] | None,
    cancel: CancelToken | None,
    chunks: ChunkSharing | None = None,
) -> Finished:
    """Cut the clip at ``source`` and store the result; raises what ``process_clip`` raises
    (the caller turns it into the run's report)."""
    name = item.original_key.rsplit("/", 1)[-1]
    from ..engine.video.clip import process_clip  # PyAV's encoders: a clip's run alone needs them

    info: ClipInfo = open_clip(source, limits, name=name)
    options = RemoveOptions(**item.options)
    result_key = clip_result_key(item.result_key, options)
    direct = storage.local_path(result_key)
    destination = direct or folder / f"result{Path(result_key).suffix}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    masks = FrameMasks(storage, name, remover.model_identity, folder)
    reports = FrameReports(item, send) if send is not None else None
    made: dict[str, int] | None = None
    try:
        if chunks is not None and info.frames > chunks.chunk_frames:
            made = _masks_in_chunks(
                chunks, item, MaskMaker(remover, source, info, name, masks, options.model),
                info.frames, cancel or CancelToken(), reports,
            )  # fmt: skip
            if reports is not None:
                reports.part(MASKS_SHARE, 1.0 - MASKS_SHARE)
        result = process_clip(
            remover, source, destination, options, info, name=name, cancel=cancel,
            progress=reports, checkpoints=masks,
        )  # fmt: skip
    except (Cancelled, EngineError) as exc:
        # Cancelled, or the clip's own fault: the job ends, so its checkpoints go. A failed
        # write may be a full disk: that run is lost and resumes from them later.
        if not isinstance(exc, OutputError):
            masks.clear(info.frames)
        raise
    if direct is None:
        storage.put(result_key, destination)
    masks.clear(result.frames)
    ran = result.frames_computed + sum((made or {}).values())
    log.info("clip of %d frames: the model ran on %d", result.frames, ran)
    return Finished(
        item.job_id,
        item.dispatch_id,
        width=result.width,
        height=result.height,
        format=result.format.value,
        bytes=result.bytes,
        timings={stage.value: seconds for stage, seconds in result.timings.items()},
        model=remover.model_name,
        model_sha256=remover.model_sha256,
        frames_run=ran,
    )


def _masks_in_chunks(
    chunks: ChunkSharing,
    item: WorkItem,
    make: MaskMaker,
    frames: int,
    cancel: CancelToken,
    reports: FrameReports | None,
) -> dict[str, int] | None:
    """Every frame's mask, made in chunks across the cluster (``workers.chunks``); the
    masks each worker made, or None when Redis failed (the encode pass makes the rest)."""
    if reports is not None:
        reports.part(0.0, MASKS_SHARE)
        reports(0, frames)

    def report(done: int) -> None:
        if reports is not None:
            reports(min(done, frames), frames)

    return share_masks(chunks, item, make, frames, cancel, report)


def clip_result_key(result_key: str, options: RemoveOptions) -> str:
    """The job's result key with the extension of the format its clip is written in."""
    stem = result_key.rsplit(".", 1)[0]
    return stem + clip_format(options.format).extension


def still_item(item: WorkItem) -> WorkItem:
    """A photo's run asked for a clip format (a batch of photos and clips shares options):
    the photo is written in ``still_format``'s, under that format's extension."""
    fmt = RemoveOptions(**item.options).format
    still = still_format(fmt)
    if still is fmt:
        return item
    stem = item.result_key.rsplit(".", 1)[0]
    options = {**item.options, "format": still.value}
    return replace(item, options=options, result_key=stem + still.extension)


def clip_limits(settings: Settings) -> ClipLimits:
    return ClipLimits(
        seconds=settings.max_video_seconds,
        frames=settings.max_video_frames,
        pixels=settings.max_image_pixels,
    )
