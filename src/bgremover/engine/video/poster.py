"""A clip's poster: its first frame, upright, with the alpha of a WebM or MOV result (a
card and the results grid show it before the clip plays)."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

from ..errors import InputError
from .frames import _TURNS
from .probe import check_pixels

_ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}
"""FFmpeg's own VP8/VP9 decoders drop the alpha a WebM carries beside the colour; libvpx's
read it."""


def poster(path: Path, *, name: str, max_pixels: int) -> Image.Image:
    """The first frame of the clip at ``path`` (RGB, or RGBA where it has alpha); frames
    over ``max_pixels`` are refused from the header, never decoded (a web process runs this)."""
    try:
        if _is_animation(path):
            with Image.open(path) as animation:
                check_pixels(name, animation.width, animation.height, max_pixels)
                return animation.convert("RGBA")
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            check_pixels(name, stream.codec_context.width, stream.codec_context.height, max_pixels)
            decoder = None
            if stream.metadata.get("alpha_mode") == "1" and stream.codec_context is not None:
                wanted = _ALPHA_DECODERS.get(stream.codec_context.name)
                decoder = av.CodecContext.create(wanted, "r") if wanted else None
            frame = _first(container, stream, decoder)
            check_pixels(name, frame.width, frame.height, max_pixels)  # a header can lie
    except (av.FFmpegError, OSError, StopIteration, IndexError, ValueError) as exc:
        raise InputError(
            f"{name}: no frame of the clip could be read ({exc})", code="corrupt_image"
        ) from None
    rgba = frame.format.name.startswith(("yuva", "rgba", "bgra", "gbrap"))
    image = Image.fromarray(frame.to_ndarray(format="rgba" if rgba else "rgb24"))
    turn = round(frame.rotation / 90) * 90 % 360
    return image.transpose(_TURNS[turn]) if turn else image


def _first(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    decoder: av.CodecContext | None,
) -> av.VideoFrame:
    if decoder is None:
        return next(container.decode(stream))
    for packet in container.demux(stream):
        for frame in decoder.decode(packet):  # type: ignore[attr-defined]
            return frame  # type: ignore[no-any-return]
    raise StopIteration


def _is_animation(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            return getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, SyntaxError):
        return False
