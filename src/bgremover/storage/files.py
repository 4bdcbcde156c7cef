"""Originals, results and backgrounds in the store, and thumbnails in a local cache.

Originals are named by content hash, never by the user's file name, so uploads cannot choose
names and identical files are stored once. Every storage key is derived here from a checked
key (a content hash or a job id), never taken from a row. Thumbnails are a bounded cache in
this process's data dir (``ThumbnailCache``), named for the file they show and deleted with it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..engine.decode import SUPPORTED_MEDIA_TYPES, sniff
from ..engine.options import OutputFormat
from ..engine.video.probe import VIDEO_MEDIA_TYPES
from .base import Storage
from .thumbnail_cache import ThumbnailCache

HASH_PATTERN = r"^[0-9a-f]{64}$"
"""A content hash: the name of an original or background in the store."""
ID_PATTERN = r"^[0-9a-f]{32}$"
"""A job, batch or session id (a uuid4 in hex); results are named by job id."""


MASK_VERSION = 1
"""Part of every mask key: bump it when the model's mask of an image changes for a reason the
model's identity does not show (its pre- or post-processing, resizing), so old masks miss."""


class NotAStoreKey(ValueError):
    """A hash or id that is not one: joining it into a key could leave the store."""


def _checked(key: str, pattern: str) -> str:
    if not re.fullmatch(pattern, key):
        raise NotAStoreKey(f"{key[:80]!r} is not a file store key")
    return key


def _fanned(folder: str, name: str) -> str:
    return f"{folder}/{name[:2]}/{name}"


class FileStore:
    def __init__(
        self, storage: Storage, cache_root: Path, *, thumbnail_cache_bytes: int = 500_000_000
    ) -> None:
        self.storage = storage
        self.thumbnails = ThumbnailCache(cache_root / "thumbnails", thumbnail_cache_bytes)

    def add_original(self, source: Path) -> tuple[str, int]:
        """Move ``source`` into the store; returns its sha256 and size."""
        return self._add(source, "originals")

    def add_background(self, source: Path) -> str:
        """Move a background image (for compositing) into the store; returns its hash."""
        content_hash, _ = self._add(source, "backgrounds")
        return content_hash

    def _add(self, source: Path, folder: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        content_hash = digest.hexdigest()
        size = source.stat().st_size
        key = _fanned(folder, content_hash)
        if self.storage.size(key) == size:
            source.unlink()
        else:
            self.storage.put(key, source)
        return content_hash, size

    def original_key(self, content_hash: str) -> str:
        return _fanned("originals", _checked(content_hash, HASH_PATTERN))

    def background_key(self, content_hash: str) -> str:
        return _fanned("backgrounds", _checked(content_hash, HASH_PATTERN))

    def result_key(self, job_id: str, extension: str) -> str:
        return _fanned("results", _checked(job_id, ID_PATTERN) + extension)

    @staticmethod
    def mask_key(content_hash: str, model_identity: str) -> str:
        """Where the model's mask of an original is kept: named by the sha256 of everything
        the mask depends on (the original's content hash, the model, ``MASK_VERSION``),
        computed here, so no request or row ever names the path."""
        name = hashlib.sha256(
            f"{MASK_VERSION}\0{_checked(content_hash, HASH_PATTERN)}\0{model_identity}".encode()
        ).hexdigest()
        return _fanned("masks", name) + ".png"

    def result_file(self, job_id: str, result_format: str | None) -> str | None:
        """The key of a finished job's result, from its id and stored format (None when the
        format is not one we write)."""
        try:
            return self.result_key(job_id, OutputFormat(result_format or "").extension)
        except ValueError:
            return None

    def image_type(self, key: str) -> str | None:
        """The media type of a stored file read from its bytes when it is an image we decode;
        None when it is missing or anything else (a row's claim is never asked)."""
        try:
            with self.storage.open(key) as f:
                header = f.read(8192)
        except (OSError, ValueError):
            return None
        media_type = sniff(header)
        known = media_type in SUPPORTED_MEDIA_TYPES or media_type in VIDEO_MEDIA_TYPES
        return media_type if known else None

    def delete_original(self, content_hash: str) -> bool:
        try:
            return self.delete(self.original_key(content_hash))
        except NotAStoreKey:
            return False

    def delete(self, key: str | None) -> bool:
        """Delete a stored file and its thumbnails; whether the file was there."""
        if not key:
            return False
        self.thumbnails.discard(key)
        return self.storage.delete(key)


def background_hash(value: object) -> str | None:
    """The content hash a job's ``background_image`` option names. Rows written before the
    store had keys hold the file's path, whose name is the hash."""
    if value is None:
        return None
    name = str(value).replace("\\", "/").rsplit("/", 1)[-1]
    return name if re.fullmatch(HASH_PATTERN, name) else None
