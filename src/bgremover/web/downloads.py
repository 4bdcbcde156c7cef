"""Result and archive downloads: file names derived from the original, other formats and
backgrounds rendered from the stored transparent result without running the model again."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from PIL import Image

from ..engine import composite
from ..engine.encode import encode
from ..engine.options import OutputFormat, parse_color
from .errors import ApiError


def download_name(file_name: str, fmt: OutputFormat) -> str:
    """``photo.png`` → ``photo-no-bg.png`` (``photo-mask.png`` for a mask)."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.strip(".") else file_name
    suffix = "-mask" if fmt is OutputFormat.MASK else "-no-bg"
    return f"{stem or 'image'}{suffix}{fmt.extension}"


def content_disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "'").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=utf-8''{quote(name)}"


def render(result: Path, stored: OutputFormat, fmt: OutputFormat, bg: str | None) -> bytes:
    """The stored result in another format or on a background colour."""
    with Image.open(result) as image:
        image.load()
    if stored is OutputFormat.MASK or image.mode not in ("RGBA", "LA"):
        if fmt is stored and bg is None:
            return result.read_bytes()
        raise ApiError(
            409,
            "no_transparency",
            "This result was saved without transparency (as a mask, JPEG or on a background); "
            "retry the job with PNG or WebP output to convert it.",
        )
    cut = image.convert("RGBA")
    if fmt is OutputFormat.MASK:
        return encode(cut.getchannel("A"), OutputFormat.MASK)
    color = None
    if bg is not None:
        try:
            color = parse_color(bg)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", f"bg: {exc}") from None
    if color is None and fmt is OutputFormat.JPEG:
        color = (255, 255, 255, 255)
    out = composite.on_color(cut, color) if color is not None else cut
    return encode(out, fmt)
