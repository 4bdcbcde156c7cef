"""Uploaded files: parsed with each file cut off at the size limit, copied in chunks to a
staging folder (never held in memory), sniffed from their bytes, and named for display only:
a user's file name is never a path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from fastapi.routing import APIRoute
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..engine.decode import SUPPORTED_MEDIA_TYPES, sniff
from ..engine.errors import ModelError
from ..engine.options import RemoveOptions
from ..engine.video.probe import VIDEO_MEDIA_TYPES
from ..jobs.names import display_name
from ..jobs.presets import PresetOptions
from ..jobs.schemas import Upload
from .errors import ApiError

_CHUNK = 1 << 20
_SNIFF_BYTES = 8192


class UploadRoute(APIRoute):
    """A route whose multipart files are cut off at ``BGREMOVER_MAX_UPLOAD_BYTES`` while the
    body is parsed: Starlette's parser limits text fields only, so a 200 MB file was written
    whole to a temporary file before ``stage`` refused it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            return await handler(_CappedRequest(request.scope, request.receive))

        return capped


class _CappedRequest(Request):
    """Starlette's ``form()`` with ``_CappedParser`` for multipart bodies. Starlette has no
    hook for the parser, so this overrides its private ``_get_form`` (and the parser its
    ``_current_part``); tests/security/test_bodies.py fails if either changes."""

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        content_type, _ = parse_options_header(self.headers.get("Content-Type"))
        if self._form is None and content_type == b"multipart/form-data":
            try:
                async with aclosing(self.stream()) as stream:
                    parser = _CappedParser(
                        self.headers, stream, max_files=max_files, max_fields=max_fields,
                        max_part_size=max_part_size,
                        max_file_size=self.app.state.settings.max_upload_bytes,
                    )  # fmt: skip
                    self._form = await parser.parse()
            except MultiPartException as exc:
                raise HTTPException(400, exc.message) from None
        return await super()._get_form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
        )


class _CappedParser(MultiPartParser):
    """Keeps at most ``max_file_size + 1`` bytes of each file: enough for ``stage`` to see
    that it is too large; the rest of the part is read and dropped."""

    def __init__(self, *args: Any, max_file_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = max_file_size + 1
        self._kept = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._kept = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_part.file is not None:
            end = min(end, start + self._room - self._kept)
            if end <= start:
                return
            self._kept += end - start
        super().on_part_data(data, start, end)


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


def check_model(settings: Settings, name: str) -> None:
    """A 422 naming this server's models unless ``name`` is one of them (built-in or added
    with ``bgremover models add``)."""
    from ..engine.models import ModelStore

    try:
        ModelStore(settings.models_dir).check_name(name)
    except ModelError as exc:
        raise ApiError(422, exc.code, exc.message) from None


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
