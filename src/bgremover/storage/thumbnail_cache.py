"""The thumbnail cache: rendered WebPs in a local folder, bounded in bytes, least recently
used first out.

Files are named for the stored file they show and the size rendered, so a name never
changes meaning. A file's modification time is its last use (a hit touches it), which every
process sharing the folder sees; each process counts what it writes and, once the count
passes the limit, looks at the folder itself and deletes the oldest files until it is back
under (to 90 % of the limit, so that is not needed on every write).
"""

from __future__ import annotations

import os
import threading
from contextlib import suppress
from pathlib import Path

from ..engine.encode import write_atomic

_LOW_WATER = 0.9
"""An eviction leaves the cache at most this fraction of its limit."""


class ThumbnailCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._counted: int | None = None
        """Bytes in the folder as last seen plus what this process wrote since; None until
        the first write looks."""

    def path(self, key: str, size: int) -> Path:
        """Where the thumbnail of the stored file ``key`` at ``size`` goes. Keys' last parts
        are unique (content hash, job id) and the files never change, so neither does this."""
        name = key.rsplit("/", 1)[-1]
        return self.root / name[:2] / f"{name}.{size}.webp"

    def read(self, key: str, size: int) -> bytes | None:
        """The cached thumbnail, marked as just used; None when there is none."""
        path = self.path(key, size)
        try:
            data = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:
            return None
        return data

    def write(self, key: str, size: int, data: bytes) -> None:
        """Cache ``data``; makes room by deleting the least recently used thumbnails."""
        write_atomic(self.path(key, size), data)
        with self._lock:
            if self._counted is None:
                self._counted = self._total()
            else:
                self._counted += len(data)
            if self._counted > self.max_bytes:
                self._counted = self._evict()

    def discard(self, key: str) -> None:
        """Delete every cached size of the stored file ``key`` (it was deleted)."""
        name = key.rsplit("/", 1)[-1]
        for path in (self.root / name[:2]).glob(f"{name}.*.webp"):
            with suppress(FileNotFoundError):
                path.unlink()

    def _files(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every cached thumbnail."""
        found = []
        for path in self.root.glob("*/*.webp"):
            with suppress(FileNotFoundError):  # another process evicted it meanwhile
                stat = path.stat()
                found.append((stat.st_mtime, stat.st_size, path))
        return found

    def _total(self) -> int:
        return sum(size for _, size, _ in self._files())

    def _evict(self) -> int:
        """Delete the least recently used files until the cache is under its low-water mark;
        the bytes left."""
        files = sorted(self._files(), key=lambda file: file[0])
        total = sum(size for _, size, _ in files)
        target = self.max_bytes * _LOW_WATER
        for _, size, path in files:
            if total <= target:
                break
            with suppress(FileNotFoundError):
                path.unlink()
            total -= size
        return total
