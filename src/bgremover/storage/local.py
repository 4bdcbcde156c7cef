"""The default backend: a folder (the data dir)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from .base import PROBE_BYTES, Storage, StorageError, check_key


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{root}: cannot create the storage folder ({exc})") from exc

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError:  # another filesystem: copy next to the target, then rename into place
            part = target.with_name(target.name + ".part")
            try:
                shutil.copyfile(source, part)
                os.replace(part, target)
            except OSError:
                part.unlink(missing_ok=True)  # a full disk must not keep half a copy
                raise
            source.unlink()

    def get(self, key: str, target: Path) -> None:
        shutil.copyfile(self._path(key), target)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def describe(self) -> str:
        return self.root.as_uri()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root}: the storage folder is not writable")

    def probe(self) -> None:
        fd, name = tempfile.mkstemp(prefix=".probe-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(PROBE_BYTES))
                f.flush()
                os.fsync(f.fileno())  # where space is allocated late, the error shows here
        finally:
            os.unlink(name)
