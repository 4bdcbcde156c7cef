"""A Celery worker process's own temporary folder (copies of originals it reads from S3).

It is removed when the process exits. A process killed outright (kill -9, the OOM killer)
cannot remove it, so each new one removes the folders of owners that are gone: named by the
owner's pid and locked by it while it lives, a folder is removed only when that pid no longer
runs and nobody holds its lock (which also keeps the folders of live processes of another
PID namespace sharing this temporary directory, whose pids mean nothing here).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PREFIX = "bgremover-worker-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")
_LOCK = ".owner"


class Scratch:
    """This process's folder under ``parent`` (the system's temporary directory by default)."""

    def __init__(self, parent: Path | None = None) -> None:
        root = parent if parent is not None else Path(tempfile.gettempdir())
        remove_stale(root)
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root))
        self._lock: IO[str] | None = open(self.path / _LOCK, "w")  # noqa: SIM115 - held for life
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        """Remove the folder (a process exiting normally)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def remove_stale(root: Path) -> int:
    """Remove the folders under ``root`` of worker processes that are gone; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        owner = _OWNED.match(entry.name)
        if owner is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            mine = entry.stat(follow_symlinks=False).st_uid == os.getuid()
        except OSError:
            continue
        if mine and not _pid_runs(int(owner.group(1))) and _remove_unlocked(Path(entry.path)):
            removed += 1
    if removed:
        log.info("removed %d scratch folders of worker processes that are gone", removed)
    return removed


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_unlocked(folder: Path) -> bool:
    """Remove ``folder`` if no live process holds its lock (or it never got one)."""
    try:
        lock = open(folder / _LOCK)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        lock = None  # killed between creating the folder and locking it
    except OSError:
        return False
    try:
        if lock is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its owner lives (in another PID namespace)
        shutil.rmtree(folder, ignore_errors=True)
        return not folder.exists()
    finally:
        if lock is not None:
            with contextlib.suppress(OSError):
                lock.close()
