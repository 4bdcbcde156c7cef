"""The storage contract."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_KEY = re.compile(
    r"(?:originals|backgrounds)/(?P<hash>[0-9a-f]{2})/(?P=hash)[0-9a-f]{62}"
    r"|results/(?P<id>[0-9a-f]{2})/(?P=id)[0-9a-f]{30}\.(?:png|webp|jpg|webm|mov|gif|mp4|zip)"
    r"|masks/(?P<mask>[0-9a-f]{2})/(?P=mask)[0-9a-f]{62}\.png"
)
"""The only keys the job system makes (``jobs.files``): an original or background named by
its sha256, a result by its job id and format, a model's mask by the sha256 of what it
depends on, each under a fan-out of the name's first two characters. Anything else (``..``,
a leading ``/``, a user's file name, a folder of its own) is refused, so no key can leave
the store or reach a file the store did not make."""

PROBE_BYTES = 64 * 1024
"""The size of a probe: about a small result, so a disk with a few bytes left still fails it."""


class StorageError(RuntimeError):
    """A backend could not do what was asked; the message names the store and the fix."""


def check_key(key: str) -> str:
    """``key`` if it has a shape the job system makes, else ValueError: a key that could
    leave the store (``../``, an absolute path) never reaches a backend."""
    if not _KEY.fullmatch(key):
        raise ValueError(f"{key[:80]!r} is not a storage key")
    return key


class Storage(ABC):
    """Files by key. Writes are atomic: a reader sees the whole file or none."""

    @abstractmethod
    def put(self, key: str, source: Path) -> None:
        """Store ``source``'s content under ``key`` and remove ``source`` (it is consumed)."""

    @abstractmethod
    def get(self, key: str, target: Path) -> None:
        """Copy the file to ``target``; FileNotFoundError when there is none."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A binary stream of the file for reading; FileNotFoundError when there is none."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The file's size in bytes; None when there is no such file."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Delete the file; whether it was there."""

    @abstractmethod
    def describe(self) -> str:
        """Where the files are, for logs and /api/health ("s3://bucket/prefix at http://…")."""

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def local_path(self, key: str) -> Path | None:
        """A path this process may read (and atomically replace) directly, when the backend
        is a local folder; None otherwise."""
        return None

    @contextmanager
    def readable(self, key: str, scratch: Path) -> Iterator[Path]:
        """A local file with the content of ``key``: the stored file itself when local,
        else a copy in ``scratch`` that is removed afterwards."""
        local = self.local_path(key)
        if local is not None:
            if not local.is_file():
                raise FileNotFoundError(key)
            yield local
            return
        copy = scratch / key.replace("/", "_")
        self.get(key, copy)
        try:
            yield copy
        finally:
            copy.unlink(missing_ok=True)

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError when the store cannot be used (for /api/health and start-up)."""

    @abstractmethod
    def probe(self) -> None:
        """Write a small file and delete it: raises (OSError, StorageError) while the store
        cannot take a result, so a dispatcher waits instead of running jobs for nothing."""
