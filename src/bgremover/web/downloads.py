"""Result and archive downloads: file names derived from the original, other formats and
backgrounds rendered from the stored transparent result without running the model again."""

from __future__ import annotations

from urllib.parse import quote

from ..engine import composite
from ..engine.decode import decode
from ..engine.encode import encode
from ..engine.errors import InputError
from ..engine.options import OutputFormat, parse_color
from ..jobs.names import display_name
from .errors import ApiError

# RFC 5987 attr-char: what filename*= may carry unencoded.
_ATTR_CHARS = "!#$&+-.^_`|~"


def download_name(file_name: str, fmt: OutputFormat) -> str:
    """``photo.png`` → ``photo-no-bg.png`` (``photo-mask.png`` for a mask): a plain name
    (``plain_name``), so no row can put a folder or a drive into an archive."""
    file_name = display_name(file_name)
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.strip(".") else file_name
    suffix = "-mask" if fmt is OutputFormat.MASK else "-no-bg"
    return plain_name(f"{stem or 'image'}{suffix}{fmt.extension}")


def archive_name(batch_name: str) -> str:
    """A batch's ZIP name: its name as a ``plain_name``."""
    return plain_name(f"{batch_name}.zip")


def plain_name(name: str) -> str:
    """The one rule for a name that becomes a file on the user's disk (ZIP entries, the
    archive, downloads): ``display_name`` without folder, drive or stream separators, which
    are kept as text (``C:evil.png`` is drive-relative to a naive Windows extractor, and
    ``a.png:b`` an NTFS stream)."""
    return display_name(name.replace("/", "-").replace("\\", "-").replace(":", "."))


def content_disposition(name: str) -> str:
    """``attachment`` per RFC 6266: an ASCII ``filename`` for old clients and the exact
    name as UTF-8 in ``filename*``; control characters never reach the header."""
    name = plain_name(name)
    fallback = "".join(
        "'" if ch == '"' else ch if " " <= ch <= "~" and ch != "\\" else "_" for ch in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe=_ATTR_CHARS)}"


def render(
    result: bytes, stored: OutputFormat, fmt: OutputFormat, bg: str | None, max_pixels: int
) -> bytes:
    """The stored result in another format or on a background colour."""
    try:
        image = decode(result, name="the stored result", max_pixels=max_pixels)
    except InputError as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    if stored is OutputFormat.MASK or image.mode != "RGBA":
        if fmt is stored and bg is None:
            return result
        raise ApiError(
            409,
            "no_transparency",
            "This result was saved without transparency (as a mask, JPEG or on a background); "
            "retry the job with PNG or WebP output to convert it.",
        )
    if fmt is OutputFormat.MASK:
        return encode(image.getchannel("A"), OutputFormat.MASK)
    color = None
    if bg is not None:
        try:
            color = parse_color(bg)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", f"bg: {exc}") from None
    if color is None and fmt is OutputFormat.JPEG:
        color = (255, 255, 255, 255)
    out = composite.on_color(image, color) if color is not None else image
    return encode(out, fmt)
