"""Originals and results on disk. Originals are named by content hash, never by the user's
file name, so uploads cannot choose paths and identical files are stored once. Thumbnails
are a cache beside them, named for the file they show and deleted with it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


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
        return self.backgrounds / content_hash[:2] / content_hash

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
        return self.originals / content_hash[:2] / content_hash

    def result_path(self, job_id: str, extension: str) -> Path:
        return self.results / job_id[:2] / f"{job_id}{extension}"

    def thumbnail_path(self, source: Path, size: int) -> Path:
        """Where the cached WebP thumbnail of a stored original or result goes. Their names
        are unique (content hash, job id) and the files never change, so neither does this."""
        return self.thumbnails / source.name[:2] / f"{source.name}.{size}.webp"

    def delete_original(self, content_hash: str) -> bool:
        return self.delete(self.original_path(content_hash))

    def delete(self, path: str | Path | None) -> bool:
        """Delete a stored file and its thumbnails; whether the file was there."""
        if not path:
            return False
        path = Path(path)
        for thumbnail in (self.thumbnails / path.name[:2]).glob(f"{path.name}.*.webp"):
            _unlink(thumbnail)
        return _unlink(path)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
