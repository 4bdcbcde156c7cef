"""Thumbnails: a small upright WebP of an original or a result for cards and lists, so a page
of 12 MP photos costs kilobytes to show instead of hundreds of megabytes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from .decode import decode, read_source
from .encode import encode
from .options import OutputFormat

_QUALITY = 80


def thumbnail(path: Path, size: int, *, max_pixels: int) -> bytes:
    """A WebP of the image at ``path`` whose longest side is at most ``size`` (never
    enlarged), upright, with its transparency; any format ``decode`` reads (HEIC too)."""
    data, name = read_source(path)
    image = decode(data, name=name, max_pixels=max_pixels, draft=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return encode(image, OutputFormat.WEBP, quality=_QUALITY)
