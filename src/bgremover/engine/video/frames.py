"""Decoding a clip's frames, upright, each with its presentation time (variable frame
rates are kept: a frame lasts until the next one's time)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image, ImageSequence

from ..errors import InputError
from .probe import ClipInfo, check_frame, check_pixels

_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
          270: Image.Transpose.ROTATE_270}  # fmt: skip


@dataclass(frozen=True)
class Frame:
    index: int
    time: float
    """Seconds from the clip's first frame (its presentation timestamp)."""
    image: Image.Image
    """Upright RGB."""


def frames(path: Path, info: ClipInfo, *, name: str) -> Iterator[Frame]:
    """Every frame of the clip in order; ``InputError`` naming ``name`` when the data stops
    or goes wrong part-way (a truncated file)."""
    limits = info.limits
    max_pixels = limits.pixels if limits else None
    source = (
        _animation_frames(path)  # one canvas for every frame: checked by ``open_clip``
        if info.animation
        else _video_frames(path, info.rotation, max_pixels, name)
    )
    count = 0
    try:
        for count, (time, image) in enumerate(source, start=1):
            if limits is not None:
                check_frame(name, count - 1, time, limits)
            yield Frame(count - 1, time, image)
    except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"{name}: the clip is truncated or corrupt after frame {count} ({exc})",
            code="corrupt_image",
        ) from None
    if count == 0:
        raise InputError(f"{name}: no frame of the clip could be decoded", code="corrupt_image")


def _video_frames(
    path: Path, rotation: int, max_pixels: int | None, name: str
) -> Iterator[tuple[float, Image.Image]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # One thread: decoding threads beside onnxruntime's would preempt them at their
        # barriers (as helper threads did to photos: ``remover.plan_batch``).
        stream.codec_context.thread_count = 1
        start: float | None = None
        for frame in container.decode(stream):
            time = frame.time if frame.time is not None else 0.0
            start = time if start is None else start
            if max_pixels is not None:  # before the copy: a stream's size may change
                check_pixels(name, frame.width, frame.height, max_pixels)
            image = Image.fromarray(frame.to_ndarray(format="rgb24"), "RGB")
            if rotation:
                image = image.transpose(_TURNS[rotation])
            yield time - start, image


def _animation_frames(path: Path) -> Iterator[tuple[float, Image.Image]]:
    with Image.open(path) as animation:
        time = 0.0
        for frame in ImageSequence.Iterator(animation):
            yield time, frame.convert("RGB")
            time += (frame.info.get("duration", 100) or 100) / 1000
