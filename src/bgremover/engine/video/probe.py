"""Is a file a clip, and may it be cut here: checked from its headers before any frame is
decoded, so a clip over the limits, or one no decoder here reads, fails its own job with
the reason."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..decode import sniff
from ..errors import InputError

if TYPE_CHECKING:
    import av

_SNIFF_BYTES = 8192
_ANIMATED = frozenset({"image/gif", "image/webp"})
"""Image types that may hold an animation: a clip when they have more than one frame."""
VIDEO_MEDIA_TYPES = frozenset(
    {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-m4v"}
)
"""The containers taken as clips (MP4, MOV, WebM, MKV)."""


@dataclass(frozen=True)
class ClipLimits:
    """``Settings.max_video_seconds``, ``max_video_frames`` and ``max_image_pixels``."""

    seconds: float
    frames: int
    pixels: int


@dataclass(frozen=True)
class ClipInfo:
    """What the headers say of a clip, its sides upright (after its rotation)."""

    frames: int
    """Frames it holds (counted by a demux pass where the header does not say)."""
    seconds: float
    width: int
    height: int
    rotation: int
    """Degrees the frames turn to stand upright (0, 90, 180, 270)."""
    fps: Fraction
    codec: str
    audio: str | None
    """The audio codec, when it has sound."""
    animation: bool = False
    """An animated GIF or WebP (decoded by Pillow: FFmpeg reads no animated WebP)."""
    limits: ClipLimits | None = None
    """The limits its headers passed (``open_clip``): decoding holds the frames to them too,
    as a header can lie."""


def may_be_clip(media_type: str | None) -> bool:
    """Whether an original of ``media_type`` (as sniffed at upload) may be a clip: a video
    container, or a GIF or WebP, which may hold an animation (``is_clip`` reads the file)."""
    return media_type in VIDEO_MEDIA_TYPES or media_type in _ANIMATED


def is_clip(path: Path) -> bool:
    """A video container, or a GIF or WebP with more than one frame."""
    with open(path, "rb") as file:
        media_type = sniff(file.read(_SNIFF_BYTES))
    if media_type in VIDEO_MEDIA_TYPES:
        return True
    if media_type not in _ANIMATED:
        return False
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, SyntaxError):
        return False  # the photo path says what is wrong with it


def open_clip(path: Path, limits: ClipLimits, *, name: str) -> ClipInfo:
    """The clip's ``ClipInfo``; ``InputError`` naming ``name`` and the fix when it is empty,
    truncated, undecodable, of a codec this build cannot decode, or over a limit."""
    if path.stat().st_size == 0:
        raise InputError(f"{name}: the file is empty (0 bytes)", code="empty_file")
    pixels = limits.pixels
    info = _animation(path, name, pixels) if _is_animation(path) else _video(path, name, pixels)
    _check(name, info.frames, info.seconds, info.width, info.height, limits)
    return replace(info, limits=limits)


def _is_animation(path: Path) -> bool:
    with open(path, "rb") as file:
        return sniff(file.read(_SNIFF_BYTES)) in _ANIMATED


def _animation(path: Path, name: str, max_pixels: int) -> ClipInfo:
    try:
        with Image.open(path) as image:
            width, height = image.size
            check_pixels(name, width, height, max_pixels)  # before any frame is decoded
            frames = getattr(image, "n_frames", 1)
            codec = (image.format or "image").lower()
            milliseconds = 0
            for index in range(frames):
                image.seek(index)
                milliseconds += image.info.get("duration", 100) or 100
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(
            f"{name}: the animation is truncated or corrupt ({exc})", code="corrupt_image"
        ) from None
    seconds = milliseconds / 1000
    fps = Fraction(frames / seconds).limit_denominator(1000) if seconds else Fraction(10)
    return ClipInfo(frames, seconds, width, height, 0, fps, codec, None, animation=True)


def _video(path: Path, name: str, max_pixels: int) -> ClipInfo:
    import av  # FFmpeg's libraries: loaded by the first clip, not by every photo's process

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{name}: the file has no video stream", code="not_an_image")
            stream = container.streams.video[0]
            # Before a packet is read or a frame decoded: uploads read this in the web
            # process, and a header's sides are all there is to go by yet.
            check_pixels(name, stream.codec_context.width, stream.codec_context.height, max_pixels)
            codec = stream.codec_context.name if stream.codec_context else "unknown"
            frames = stream.frames or _count_frames(container, stream.index)
            audio = (
                container.streams.audio[0].codec_context.name if container.streams.audio else None
            )
            rotation = _rotation(next(container.decode(stream), None))
            seconds = _seconds(container, stream)
            width, height = stream.codec_context.width, stream.codec_context.height
            fps = stream.guessed_rate or stream.average_rate or Fraction(10)
    except av.error.InvalidDataError:
        raise InputError(
            f"{name}: the video data is truncated or corrupt (no decoder could read it)",
            code="corrupt_image",
        ) from None
    except av.error.DecoderNotFoundError as exc:
        raise InputError(
            f"{name}: its video codec is not supported here ({exc}); convert it to H.264 MP4 "
            "or VP9 WebM",
            code="unsupported_format",
        ) from None
    except av.FFmpegError as exc:
        raise InputError(
            f"{name}: the video cannot be read ({exc}); it may be truncated or corrupt",
            code="corrupt_image",
        ) from None
    if frames == 0 or rotation is None:
        raise InputError(f"{name}: the clip has no frames", code="corrupt_image")
    if rotation in (90, 270):
        width, height = height, width
    return ClipInfo(frames, seconds, width, height, rotation, Fraction(fps), codec, audio)


def _count_frames(container: av.container.InputContainer, index: int) -> int:
    """Frames of a stream whose header does not count them (WebM, MKV, GIF): a demux pass,
    which reads packets without decoding them."""
    count = 0
    for packet in container.demux(video=0):
        if packet.stream.index == index and packet.size:
            count += 1
    container.seek(0)
    return count


def _rotation(frame: av.VideoFrame | None) -> int | None:
    """Degrees counter-clockwise that make the clip's frames upright, from the first
    frame's display matrix (a phone's portrait clip is stored landscape with a 90° one);
    None when no frame decodes."""
    if frame is None:
        return None
    return round(frame.rotation / 90) * 90 % 360


def _seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        from av import time_base

        return container.duration / time_base
    return 0.0


def check_frame(name: str, index: int, seconds: float, limits: ClipLimits) -> None:
    """InputError when the frame ``index`` (from 0) at ``seconds`` is past the limits."""
    _check(name, index + 1, seconds, 0, 0, limits)


def _check(
    name: str, frames: int, seconds: float, width: int, height: int, limits: ClipLimits
) -> None:
    if frames > limits.frames:
        raise InputError(
            f"{name}: {frames:,} frames, over the limit of {limits.frames:,} "
            "(BGREMOVER_MAX_VIDEO_FRAMES)",
            code="video_too_long",
        )
    if seconds > limits.seconds:
        raise InputError(
            f"{name}: {seconds:.1f} s long, over the limit of {limits.seconds:g} s "
            "(BGREMOVER_MAX_VIDEO_SECONDS)",
            code="video_too_long",
        )
    check_pixels(name, width, height, limits.pixels)


def check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    """InputError when frames of ``width``×``height`` are over ``max_pixels``: checked on
    the header, before a frame of that size is decoded."""
    if width * height > max_pixels:
        raise InputError(
            f"{name}: {width}×{height} frames are over the limit of {max_pixels:,} pixels "
            "(BGREMOVER_MAX_IMAGE_PIXELS)",
            code="image_too_large",
        )
