"""Originals and results on disk. Originals are named by content hash, never by the user's
file name, so uploads cannot choose paths and identical files are stored once. Every path
is derived here from a checked key (a content hash or a job id), never taken from a row.
Thumbnails are a cache beside them, named for the file they show and deleted with it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from ..engine.decode import SUPPORTED_MEDIA_TYPES, sniff
from ..engine.options import OutputFormat

HASH_PATTERN = r"^[0-9a-f]{64}$"
"""A content hash: the name of an original or background in the store."""
ID_PATTERN = r"^[0-9a-f]{32}$"
"""A job, batch or session id (a uuid4 in hex); results are named by job id."""


class NotAStoreKey(ValueError):
    """A hash or id that is not one: joining it into a path could leave the store."""


def _checked(key: str, pattern: str) -> str:
    if not re.fullmatch(pattern, key):
        raise NotAStoreKey(f"{key[:80]!r} is not a file store key")
    return key


class FileStore:
    def __init__(self, root: Path) -> None:
        self.originals = root / "originals"
        self.results = root / "results"
        self.backgrounds = root / "backgrounds"
        self.thumbnails = root / "thumbnails"
        for folder in (self.originals, self.results, self.backgrounds, self.thumbnails):
            folder.mkdir(parents=True, exist_ok=True)

    def add_original(self, source: Path) -> tuple[str, int]:
        """Move ``source`` into the store; returns its sha256 and size."""
        return self._add(source, self.originals)

    def add_background(self, source: Path) -> Path:
        """Move a background image (for compositing) into the store; returns its path."""
        content_hash, _ = self._add(source, self.backgrounds)
        return self.background_path(content_hash)

    def _add(self, source: Path, folder: Path) -> tuple[str, int]:
        digest = hashlib.sha256()
        with open(source, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        content_hash = digest.hexdigest()
        target = folder / content_hash[:2] / content_hash
        size = source.stat().st_size
        if target.exists():
            source.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
            except OSError:  # another filesystem: copy, then rename into place
                tmp = target.with_suffix(".part")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)
                source.unlink()
        return content_hash, size

    def original_path(self, content_hash: str) -> Path:
        _checked(content_hash, HASH_PATTERN)
        return self.originals / content_hash[:2] / content_hash

    def background_path(self, content_hash: str) -> Path:
        _checked(content_hash, HASH_PATTERN)
        return self.backgrounds / content_hash[:2] / content_hash

    def result_path(self, job_id: str, extension: str) -> Path:
        _checked(job_id, ID_PATTERN)
        return self.results / job_id[:2] / f"{job_id}{extension}"

    def thumbnail_path(self, source: Path, size: int) -> Path:
        """Where the cached WebP thumbnail of a stored original or result goes. Their names
        are unique (content hash, job id) and the files never change, so neither does this."""
        return self.thumbnails / source.name[:2] / f"{source.name}.{size}.webp"

    def result_file(self, job_id: str, result_format: str | None) -> Path | None:
        """Where a finished job's result lives, from its id and stored format (None when
        the format is not one we write)."""
        try:
            return self.result_path(job_id, OutputFormat(result_format or "").extension)
        except ValueError:
            return None

    def delete_original(self, content_hash: str) -> bool:
        try:
            return self.delete(self.original_path(content_hash))
        except NotAStoreKey:
            return False

    def delete(self, path: str | Path | None) -> bool:
        """Delete a stored file and its thumbnails; whether the file was there."""
        if not path:
            return False
        path = Path(path)
        for thumbnail in (self.thumbnails / path.name[:2]).glob(f"{path.name}.*.webp"):
            _unlink(thumbnail)
        return _unlink(path)


def image_type(path: Path) -> str | None:
    """The media type of a stored file read from its bytes when it is an image we decode;
    None when it is missing or anything else (a row's claim is never asked)."""
    try:
        with open(path, "rb") as f:
            header = f.read(8192)
    except OSError:
        return None
    media_type = sniff(header)
    return media_type if media_type in SUPPORTED_MEDIA_TYPES else None


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
