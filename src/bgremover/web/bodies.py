"""Request body limits: each endpoint takes a body no larger than its largest legitimate one.

A body whose ``Content-Length`` is over the limit is refused with 413 before a byte of it is
read; a chunked one (no length) is counted as it arrives and refused where it passes the
limit. Without this a JSON body is read and parsed whole before its 422 (a 150 MB one took
the server from 241 to 666 MB), and a 100 GB upload is read. Uploads are limited by what a
batch may hold (``max_files_per_upload`` files of ``max_upload_bytes``); each file in it is
cut off at its own limit while it is parsed (``uploads.UploadRoute``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from . import routes_batches, routes_jobs, routes_misc

JSON_BODY_LIMIT = 64 * 1024
"""Every body not named in ``body_limits``: a preset, a batch name, a priority (a preset with
the longest name and every option set is under 1 KB)."""
PART_OVERHEAD = 4 * 1024
"""A multipart part's boundary and headers (a file name of 255 characters, percent-encoded)."""


@dataclass(frozen=True)
class BodyLimit:
    size: int
    why: str = ""
    """What sets it and what to do, for the error message."""


DEFAULT_LIMIT = BodyLimit(JSON_BODY_LIMIT)


def body_limits(settings: Settings) -> dict[Callable[..., Any], BodyLimit]:
    """The endpoints that take more than ``JSON_BODY_LIMIT``, with their limits."""
    file = settings.max_upload_bytes + PART_OVERHEAD
    files = settings.max_files_per_upload
    return {
        routes_batches.upload: BodyLimit(
            files * file + JSON_BODY_LIMIT,
            f": at most {files} files (BGREMOVER_MAX_FILES_PER_UPLOAD) of "
            f"{size_text(settings.max_upload_bytes)} each (BGREMOVER_MAX_UPLOAD_BYTES); "
            "send the files in several requests",
        ),
        routes_jobs.derive: BodyLimit(
            file + JSON_BODY_LIMIT, ": one background image (BGREMOVER_MAX_UPLOAD_BYTES)"
        ),
        routes_misc.import_state: BodyLimit(
            settings.max_import_bytes,
            " (BGREMOVER_MAX_IMPORT_BYTES); raise it to import a larger export",
        ),
    }


def size_text(size: int) -> str:
    if size >= 10**9:
        return f"{size / 1e9:.1f} GB"
    if size >= 10**6:
        return f"{size / 1e6:.0f} MB"
    return f"{size / 1e3:.0f} KB"


class BodyLimits:
    """Plain ASGI around the app: refuses or cuts off bodies over their endpoint's limit.

    The endpoint is known once the router has matched the request, which is before the app
    reads the body: the limit is chosen at the first read."""

    def __init__(self, app: ASGIApp, *, limits: dict[Callable[..., Any], BodyLimit]) -> None:
        self.app = app
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        declared = int(length) if length.isdigit() else 0
        received = 0

        async def counted() -> Message:
            nonlocal received
            limit = DEFAULT_LIMIT
            if "endpoint" in scope:  # not when no route matched (a 404)
                limit = self._limits.get(scope["endpoint"], DEFAULT_LIMIT)
            if declared <= limit.size:  # else refused before a byte is read
                event = await receive()
                if event["type"] != "http.request":
                    return event
                received += len(event.get("body", b""))
                if received <= limit.size:
                    return event
            # An HTTPException passes FastAPI's body reading and form parsing untouched;
            # the app's handler answers it as JSON (errors.py). Closing the connection
            # after it stops uvicorn from reading the rest of the body (and dropping it).
            raise HTTPException(
                413,
                f"the body of {scope['method']} {scope['path']} is over its limit of "
                f"{size_text(limit.size)}{limit.why}",
                headers={"Connection": "close"},
            )

        await self.app(scope, counted, send)
