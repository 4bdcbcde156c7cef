"""Responses with stored files, whichever backend holds them: a local file is served as a
file (ranges, sendfile), anything else is streamed from the store in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from fastapi import Response
from fastapi.responses import FileResponse, StreamingResponse

from ..storage import Storage

CHUNK = 1 << 16


def stored_response(
    storage: Storage, key: str, media_type: str, headers: Mapping[str, str] | None = None
) -> Response:
    local = storage.local_path(key)
    if local is not None:
        return FileResponse(local, media_type=media_type, headers=headers)
    return StreamingResponse(chunks(storage, key), media_type=media_type, headers=headers)


def chunks(storage: Storage, key: str) -> Iterator[bytes]:
    """The stored file's bytes, a chunk at a time (opened when first read)."""
    with storage.open(key) as stream:
        while block := stream.read(CHUNK):
            yield block


def read_all(storage: Storage, key: str) -> bytes:
    with storage.open(key) as stream:
        return stream.read()
