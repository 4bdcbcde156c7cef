"""Choosing the backend from ``BGREMOVER_STORAGE_URL``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import Settings
from .base import Storage, StorageError
from .local import LocalStorage


def open_storage(settings: Settings) -> Storage:
    """The store named by ``settings.storage_url``: ``file:///path``, ``s3://bucket/prefix``,
    or (unset) the data dir."""
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.data_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3" and parts.netloc:
        from .s3 import S3Storage

        return S3Storage(parts.netloc, parts.path, endpoint_url=settings.s3_endpoint_url)
    raise StorageError(
        f"BGREMOVER_STORAGE_URL={url!r}: use file:///absolute/path or s3://bucket/prefix"
    )
