"""Thumbnails: a small upright WebP of an original or a result for cards and lists, so a page
of 12 MP photos costs kilobytes to show instead of hundreds of megabytes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .decode import decode, read_source
from .encode import encode
from .options import OutputFormat

_QUALITY = 80

SIZES = (64, 128, 256, 512, 768, 1024)
"""The sizes rendered from a source (and cached): the UI asks for 128 (cards), 256, 512
(history) and 768 (results grid); any other size is made from the next one up."""


def render_size(size: int) -> int:
    """The smallest of ``SIZES`` at least ``size`` (the largest for anything above it)."""
    return next((s for s in SIZES if s >= size), SIZES[-1])


def thumbnail(source: Path | bytes, size: int, *, max_pixels: int) -> bytes:
    """A WebP of the image at ``source`` (a path, or the bytes of a larger thumbnail) whose
    longest side is at most ``size`` (never enlarged), upright, with its transparency; any
    format ``decode`` reads (HEIC too), or a clip's first frame. A JPEG decodes at the
    smallest scale that covers ``size``, so a 12 MP photo costs an eighth of its full
    decode."""
    image = _clip_poster(source, max_pixels)
    if image is None:
        data, name = read_source(source)
        image = decode(data, name=name, max_pixels=max_pixels, draft=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(image, OutputFormat.WEBP, quality=_QUALITY)


def _clip_poster(source: Path | bytes, max_pixels: int) -> Image.Image | None:
    """A clip's (or a clip result's) first frame, upright and with its alpha; None for an
    image. Imported here: PyAV loads FFmpeg, which a photo's thumbnail does not need."""
    if not isinstance(source, Path):
        return None
    from .video.poster import poster
    from .video.probe import is_clip

    return poster(source, name=source.name, max_pixels=max_pixels) if is_clip(source) else None
