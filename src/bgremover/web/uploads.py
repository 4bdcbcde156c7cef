"""Uploaded files as the web API reads them: each file cut off at the size limit while the
body is parsed (``jobs.staging`` copies and sniffs it), and form fields checked into image
options with a 422 that says what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

from fastapi.routing import APIRoute
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..engine.errors import ModelError
from ..engine.options import RemoveOptions
from ..jobs.presets import PresetOptions
from .errors import ApiError


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
