"""One clip through the photo pipeline, frame by frame: each frame's mask is checkpointed as
it is made (so a run cut short resumes at the next frame), and the result is encoded to a
temporary file that is renamed into place only when complete."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from ..cancel import CancelToken
from ..options import OutputFormat, RemoveOptions
from ..stages import Stage
from .formats import clip_format
from .frames import Frame, frames
from .probe import ClipInfo
from .smoothing import Smoother
from .writers import open_writer

if TYPE_CHECKING:
    from ..remover import Remover

FrameCallback = Callable[[int, int], None]
"""Called with the frames done and the frames in all: before the first, then after each."""


class MaskCheckpoints(Protocol):
    """Where each frame's model mask is kept while the clip runs."""

    def get(self, index: int) -> Image.Image | None:
        """Frame ``index``'s mask from an earlier run, or None."""

    def put(self, index: int, mask: Image.Image) -> None:
        """Keep frame ``index``'s mask (a failure to keep it only costs a later run)."""


@dataclass
class ClipResult:
    width: int
    height: int
    frames: int
    format: OutputFormat
    bytes: int
    frames_computed: int
    """Frames whose mask the model made in this run (the others came from checkpoints)."""
    timings: dict[Stage, float] = field(default_factory=dict)
    """Mean seconds per stage of one frame the model ran on: what a still image of the
    clip's size takes, which is what the job system's estimates learn from."""


def process_clip(
    remover: Remover,
    path: Path,
    destination: Path,
    options: RemoveOptions,
    info: ClipInfo,
    *,
    name: str,
    progress: FrameCallback | None = None,
    cancel: CancelToken | None = None,
    checkpoints: MaskCheckpoints | None = None,
) -> ClipResult:
    """Cut every frame of the clip at ``path`` (``info`` from ``open_clip``) and write it in
    ``clip_format(options.format)`` at ``destination``, atomically."""
    fmt = clip_format(options.format)
    per_frame = _frame_options(options, fmt)
    smoother = Smoother() if options.temporal_smoothing else None
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.part")
    writer = open_writer(fmt, temporary, info.fps, audio_from=path if info.audio else None)
    totals: dict[Stage, float] = {}
    computed = done = 0
    size: tuple[int, int] = (info.width, info.height)
    try:
        if progress is not None:
            progress(0, info.frames)
        for frame in frames(path, info, name=name):
            if cancel is not None:
                cancel.raise_if_cancelled()
            image, ran = _one_frame(
                remover, frame, per_frame, cancel, checkpoints, smoother, totals
            )
            computed += ran
            size = image.size
            writer.write(image, frame.time)
            done += 1
            if progress is not None:
                progress(done, max(info.frames, done))
        started = time.perf_counter()
        writer.close()
        totals[Stage.SAVING] = totals.get(Stage.SAVING, 0.0) + time.perf_counter() - started
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # Every mask kept (a resumed run, a chunked one): no frame measured, nothing to learn.
    timings = {stage: s / computed for stage, s in totals.items()} if computed else {}
    width, height = size
    return ClipResult(width, height, done, fmt, destination.stat().st_size, computed, timings)


def _frame_options(options: RemoveOptions, fmt: OutputFormat) -> RemoveOptions:
    """What each frame is cut as: the mask, or the cut-out (on white for H.264, which has no
    alpha, unless a background was asked for)."""
    update: dict[str, object] = {
        "format": OutputFormat.MASK if options.format is OutputFormat.MASK else OutputFormat.PNG
    }
    if (
        fmt is OutputFormat.MP4
        and options.background_color is None
        and not options.background_image
    ):
        update["background_color"] = (255, 255, 255, 255)
    return options.model_copy(update=update)


def _one_frame(
    remover: Remover,
    frame: Frame,
    options: RemoveOptions,
    cancel: CancelToken | None,
    checkpoints: MaskCheckpoints | None,
    smoother: Smoother | None,
    totals: dict[Stage, float],
) -> tuple[Image.Image, bool]:
    """The frame's result image, and whether the model ran on it."""
    kept = checkpoints.get(frame.index) if checkpoints is not None else None
    mask = kept
    if smoother is not None:
        if mask is None:
            only = RemoveOptions(format=OutputFormat.MASK, model=options.model)
            removal = remover.process(frame.image, only, encode_result=False, cancel=cancel)
            _add(totals, removal.timings)
            mask = removal.model_mask
        assert mask is not None
        if kept is None and checkpoints is not None:
            checkpoints.put(frame.index, mask)
        mask = smoother(frame.image, mask)
    result = remover.process(frame.image, options, encode_result=False, cancel=cancel, mask=mask)
    if smoother is None and kept is None:
        _add(totals, result.timings)
        if checkpoints is not None and result.model_mask is not None:
            checkpoints.put(frame.index, result.model_mask)
    elif smoother is not None and kept is None:
        for stage in (Stage.MASK, Stage.COMPOSITING):
            totals[stage] = totals.get(stage, 0.0) + result.timings.get(stage, 0.0)
    return result.image, kept is None


def _add(totals: dict[Stage, float], timings: dict[Stage, float]) -> None:
    for stage, seconds in timings.items():
        totals[stage] = totals.get(stage, 0.0) + seconds
