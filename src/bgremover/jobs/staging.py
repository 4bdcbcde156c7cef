"""Uploaded files staged for the job store: copied in chunks to a staging folder (never held
in memory), sniffed from their bytes, and named for display only (a user's file name is never
a path). The web API and ``watch`` stage files the same way."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..engine.decode import SUPPORTED_MEDIA_TYPES, sniff
from ..engine.video.probe import VIDEO_MEDIA_TYPES
from .names import display_name
from .schemas import Upload

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
    if media_type in VIDEO_MEDIA_TYPES:  # a clip: cut frame by frame (``engine.video``)
        return None
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
