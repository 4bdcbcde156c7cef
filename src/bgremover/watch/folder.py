"""Which files in the watched folder are work, and when each is completely written.

watchdog reports what happens to files. On Linux (inotify) it also reports the close of a
file written to: a file is complete when its writer closes it. A file renamed or moved into
the folder is complete at once (the usual "write a temporary file, then rename" save). Where
no such event comes (other systems; files already in a folder when it was created or moved
in, before its watch began), a file is complete once it has not changed for ``settle``
seconds and no process has it open for writing.
"""

from __future__ import annotations

import os
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

# Files that browsers and copy tools write before renaming them to the real name.
TEMPORARY_SUFFIXES = {".part", ".partial", ".crdownload", ".download", ".tmp", ".swp"}
RESULT_MARKS = ("-no-bg", "-mask")
"""The endings of the names ``remove`` and ``watch`` give results."""


class Rules:
    """What in ``root`` is never work: the output folder (it may lie inside), hidden and
    temporary files, and files named like results."""

    def __init__(self, root: Path, out: Path) -> None:
        self.root = root
        self.out = out

    def skip_silently(self, path: Path) -> bool:
        """Our own outputs and files still being saved under a temporary name."""
        if path == self.out or self.out in path.parents:
            return True
        rel = path.relative_to(self.root)
        return any(part.startswith(".") for part in rel.parts) or (
            path.suffix.lower() in TEMPORARY_SUFFIXES or path.name.endswith("~")
        )

    def refusal(self, path: Path) -> str | None:
        """Why a file is not processed though it looks like work, for the user to read (a
        link to outside is refused as the file is opened: ``nolinks.open_source``)."""
        if path.stem.lower().endswith(RESULT_MARKS):
            return "named like a result (…-no-bg, …-mask), so it is taken for one and not processed"
        return None

    def files(self) -> Iterator[Path]:
        """Every file under ``root`` that is not skipped silently (the start-up scan)."""
        for folder, dirs, names in os.walk(self.root):
            here = Path(folder)
            dirs[:] = [d for d in dirs if not self.skip_silently(here / d)]
            for name in names:
                path = here / name
                if not self.skip_silently(path) and path.is_file():
                    yield path


class _Forward(FileSystemEventHandler):
    """Hands watchdog's events (from its thread) to the runner's inbox."""

    def __init__(self, inbox: queue.Queue[object]) -> None:
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.inbox.put(event)


class FolderWatch:
    """Files under ``rules.root`` as they become complete. Events go to ``inbox``; the
    runner hands each back through ``note`` and asks ``ready`` for complete files."""

    def __init__(self, rules: Rules, inbox: queue.Queue[object], settle: float) -> None:
        self.rules = rules
        self.settle = settle
        self._observer = _observer()
        self._observer.schedule(_Forward(inbox), str(rules.root), recursive=True)
        self._changed: dict[Path, float] = {}
        """Files written to, with when they last changed (monotonic)."""
        self._complete: set[Path] = set()

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join()

    def add(self, path: Path) -> None:
        """A file found by a scan: complete once it has settled."""
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return
        self._changed[path] = time.monotonic() - max(0.0, age)

    def note(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        path = Path(os.fsdecode(event.src_path))
        if kind == "moved":
            self._drop(path)
            if event.dest_path:  # empty when moved out of the folder
                self._complete.add(Path(os.fsdecode(event.dest_path)))
        elif kind == "deleted":
            self._drop(path)
        elif kind in ("created", "modified"):
            self._changed[path] = time.monotonic()
        elif kind == "closed":  # closed after writing
            self._changed.pop(path, None)
            self._complete.add(path)

    def ready(self) -> list[Path]:
        """Files complete now, each once per change; ignored ones left out."""
        now = time.monotonic()
        quiet = {path for path, at in self._changed.items() if now - at >= self.settle}
        busy = _open_for_writing(quiet) if quiet else set()
        for path in busy:  # look again one settle time later
            self._changed[path] = now
        done = sorted(self._complete | (quiet - busy))
        for path in done:
            self._changed.pop(path, None)
        self._complete.clear()
        return [p for p in done if p.is_file() and not self.rules.skip_silently(p)]

    def next_check(self) -> float | None:
        """Seconds until a waiting file may have settled; None when none waits."""
        if self._complete:
            return 0.0
        if not self._changed:
            return None
        return max(0.0, min(self._changed.values()) + self.settle - time.monotonic())

    def _drop(self, path: Path) -> None:
        self._changed.pop(path, None)
        self._complete.discard(path)


def _observer() -> BaseObserver:
    """On Linux, inotify with moves from outside the folder reported as moves (not as
    creations), so a file moved in counts as complete at once."""
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    return Observer()


def _open_for_writing(paths: set[Path]) -> set[Path]:
    """Those of ``paths`` that some process has open for writing (as far as this user may
    see; where the system does not say how a file is open, any open counts)."""
    wanted = {str(p): p for p in paths}
    found: set[Path] = set()
    for process in psutil.process_iter():
        try:
            files = process.open_files()
        except (psutil.Error, OSError):
            continue
        for file in files:
            if file.path in wanted and getattr(file, "mode", "w") != "r":
                found.add(wanted[file.path])
    return found
