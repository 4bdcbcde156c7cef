"""Uploaded files: copied in chunks to a staging folder (never held in memory), size-limited,
sniffed from their bytes, and named for display only: a user's file name is never a path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from ..engine.decode import SUPPORTED_MEDIA_TYPES, sniff
from ..engine.options import RemoveOptions
from ..jobs.names import display_name
from ..jobs.presets import PresetOptions
from ..jobs.schemas import Upload
from .errors import ApiError

_CHUNK = 1 << 20
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Rejected:
    """A file refused before it became a job, with the HTTP status it alone would get."""

    file_name: str
    status: int
    code: str
    message: str

    def as_json(self) -> dict[str, object]:
        return {"file_name": self.file_name, "error": {"code": self.code, "message": self.message}}


def stage(file: BinaryIO, raw_name: str | None, staging: Path, max_bytes: int) -> Upload | Rejected:
    """Copy one uploaded file into ``staging``; refuse it if too large or not an image."""
    name = display_name(raw_name)
    staging.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix="upload-", dir=staging)
    tmp = Path(tmp_name)
    size = 0
    header = b""
    try:
        with os.fdopen(fd, "wb") as out:
            while block := file.read(_CHUNK):
                size += len(block)
                if size > max_bytes:
                    tmp.unlink()
                    return Rejected(
                        name,
                        413,
                        "file_too_large",
                        f"{name} is over the {max_bytes / 1e6:.0f} MB upload limit",
                    )
                if len(header) < _SNIFF_BYTES:
                    header += block[: _SNIFF_BYTES - len(header)]
                out.write(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    rejection = _refusal(name, size, header)
    if rejection is not None:
        tmp.unlink()
        return rejection
    return Upload(file_name=name, path=str(tmp))


def _refusal(name: str, size: int, header: bytes) -> Rejected | None:
    if size == 0:
        return Rejected(name, 415, "empty_file", f"{name} is empty (0 bytes)")
    media_type = sniff(header)
    if media_type is None or not media_type.startswith("image/"):
        what = f"a {media_type} file" if media_type else "not a file type we recognise"
        return Rejected(name, 415, "not_an_image", f"{name} is not an image ({what})")
    if media_type not in SUPPORTED_MEDIA_TYPES:
        return Rejected(
            name,
            415,
            "unsupported_format",
            f"{name}: {media_type} images are not supported; convert it to PNG, JPEG or WebP",
        )
    return None


def form_options(**fields: Any) -> RemoveOptions:
    """``RemoveOptions`` from form fields; a 422 that says what is wrong otherwise."""
    with _invalid_as_422():
        return RemoveOptions(**fields)


def preset_options(base: PresetOptions, **fields: Any) -> tuple[RemoveOptions, int]:
    """The image options and queue priority of ``base`` (a preset's options) with the form
    fields given (not None) over it; a 422 that says what is wrong otherwise."""
    with _invalid_as_422():
        options = base.overridden(**fields)
        return options.remove_options(), options.priority


@contextmanager
def _invalid_as_422() -> Iterator[None]:
    try:
        yield
    except ValidationError as exc:
        message = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ApiError(422, "invalid_options", message) from None
