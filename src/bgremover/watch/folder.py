"""Which files in the watched folder are work, and when each is completely written.

watchdog reports what happens to files. On Linux (inotify) it also reports opens and the
close of a file written to: a file is complete when its last writer closes it. A file moved
into place is complete at once (the usual "write a temporary file, then rename" save). Where
no open and close events come (other systems, a file moved in from another folder), a file
is complete once no writer is known to hold it open and it has not changed for ``settle``
seconds.
"""

from __future__ import annotations

import os
import queue
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

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
        """Why a file is not processed though it looks like work, for the user to read."""
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
        self._observer = Observer()
        self._observer.schedule(_Forward(inbox), str(rules.root), recursive=True)
        self._changed: dict[Path, float] = {}
        """Files written to, with when they last changed (monotonic)."""
        self._writers: Counter[Path] = Counter()
        """Opens not yet closed, per file (known only where the system reports them)."""
        self._complete: set[Path] = set()

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join()

    def add(self, path: Path) -> None:
        """A file found by the start-up scan: complete once it has settled."""
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return
        self._changed[path] = time.monotonic() - max(0.0, age)

    def note(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        path = Path(os.fsdecode(event.src_path))
        now = time.monotonic()
        if kind == "moved":
            self._drop(path)
            self._complete.add(Path(os.fsdecode(event.dest_path)))
        elif kind == "deleted":
            self._drop(path)
        elif kind in ("created", "modified"):
            self._changed[path] = now
        elif kind == "opened":
            self._writers[path] += 1
        elif kind in ("closed", "closed_no_write"):
            self._writers[path] -= 1
            if self._writers[path] <= 0:
                del self._writers[path]
                if kind == "closed":
                    self._complete.add(path)

    def ready(self) -> list[Path]:
        """Files complete now, each once per change; ignored ones left out."""
        now = time.monotonic()
        settled = [
            path for path, at in self._changed.items()
            if now - at >= self.settle and not self._writers[path]
        ]  # fmt: skip
        done = sorted(self._complete.union(settled))
        for path in done:
            self._changed.pop(path, None)
        self._complete.clear()
        return [p for p in done if p.is_file() and not self.rules.skip_silently(p)]

    def next_check(self) -> float | None:
        """Seconds until a waiting file may have settled; None when none waits."""
        if self._complete:
            return 0.0
        waiting = [at for path, at in self._changed.items() if not self._writers[path]]
        if not waiting:
            return None
        return max(0.0, min(waiting) + self.settle - time.monotonic())

    def _drop(self, path: Path) -> None:
        self._changed.pop(path, None)
        self._writers.pop(path, None)
        self._complete.discard(path)
