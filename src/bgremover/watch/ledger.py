"""What a watch folder has done, kept in a small JSON file in its output folder, so a restart
redoes nothing finished and follows the jobs it had queued.

Entries are keyed by the file's path relative to the watched folder and remember its size and
modification time: a file that changes afterwards is new work; one that does not is done
(or refused, or failed) for good.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Literal, get_args

from .nolinks import LinkRefused, OutputFolder

FILE_NAME = ".bgremover-watch.json"
VERSION = 1

Status = Literal["queued", "done", "failed", "skipped"]


@dataclass(frozen=True)
class Signature:
    """Which version of a file an entry is about."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, stat: os.stat_result) -> Signature:
        return cls(stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    status: Status
    job_id: str | None = None
    output: str | None = None
    """The result's path relative to the output folder, once done."""
    reason: str | None = None

    @property
    def signature(self) -> Signature:
        return Signature(self.size, self.mtime_ns)


class Ledger:
    """The entries of one output folder; thread-safe, written through on every change."""

    def __init__(self, folder: OutputFolder) -> None:
        self.folder = folder
        self.path = folder.path / FILE_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = self._load()

    def _load(self) -> dict[str, Entry]:
        try:
            text = self.folder.read(FILE_NAME)
            if text is None:
                return {}
            data = json.loads(text)
        except LinkRefused as exc:
            raise LedgerError(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise LedgerError(
                f"{self.path} is unreadable ({exc}); delete it to start over "
                "(every image in the folder is then processed again)"
            ) from None
        not_ours = LedgerError(f"{self.path} is not a version {VERSION} watch ledger; delete it")
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise not_ours
        try:
            entries = {rel: Entry(**fields) for rel, fields in data.get("files", {}).items()}
        except (AttributeError, TypeError):  # not a mapping of entries, or not our fields
            raise not_ours from None
        if any(entry.status not in get_args(Status) for entry in entries.values()):
            raise not_ours
        # Keys name files under the watched folder: one that climbs out would be uploaded.
        if any(_outside(rel) for rel in entries):
            raise not_ours
        return entries

    def settled(self, rel: str, signature: Signature) -> bool:
        """True when this version of the file needs nothing more: done, refused or failed
        (a failure is not retried until the file changes), or queued already."""
        with self._lock:
            entry = self._entries.get(rel)
        return entry is not None and (entry.status == "queued" or entry.signature == signature)

    def queued(self) -> dict[str, Entry]:
        with self._lock:
            return {rel: e for rel, e in self._entries.items() if e.status == "queued"}

    def outputs(self) -> dict[str, str]:
        """Result path (relative to the output folder) → the file it came from."""
        with self._lock:
            return {e.output: rel for rel, e in self._entries.items() if e.output}

    def record(self, rel: str, entry: Entry) -> None:
        with self._lock:
            self._entries[rel] = entry
            self._save()

    def forget(self, rel: str) -> None:
        with self._lock:
            if self._entries.pop(rel, None) is not None:
                self._save()

    def _save(self) -> None:
        data = {
            "version": VERSION,
            "files": {rel: asdict(entry) for rel, entry in sorted(self._entries.items())},
        }
        text = json.dumps(data, indent=1).encode()
        self.folder.write(PurePosixPath(FILE_NAME), lambda file: file.write(text))


def _outside(rel: str) -> bool:
    path = PurePosixPath(rel)
    return path.is_absolute() or ".." in path.parts


class LedgerError(Exception):
    """The ledger file exists but cannot be read."""
