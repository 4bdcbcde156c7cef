"""Run a real `bgremover watch` process and read what it prints, line by line, as it prints
it: every wait is on a line or on the process ending, never on a clock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .waiting import Watched, until

TIMEOUT_S = 120
WATCH = [
    sys.executable,
    "-c",
    # Ctrl-C reaches watch as KeyboardInterrupt even when this suite was started as a
    # background job of a script, whose children inherit SIGINT ignored.
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from bgremover.cli import main; sys.argv[0] = 'bgremover'; main()",
    "watch",
]


class Watching:
    """A running `bgremover watch` and the lines it prints."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        """What it printed so far (appended to under ``_changed``)."""
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, start: str | tuple[str, ...]) -> str:
        """The first line printed (so far, or next) that starts with ``start`` (or with one
        of several starts)."""

        def first() -> tuple[str | None, bool]:
            return next((line for line in self.lines if line.startswith(start)), None), self._closed

        line, _ = until(
            Watched(self._changed, first),
            lambda seen: seen[0] is not None or seen[1],
            TIMEOUT_S,
            f"a line starting {start!r}",
        )
        if line is None:
            raise AssertionError(f"watch ended before {start!r}:\n" + "\n".join(self.lines))
        return line

    def stop(self) -> str:
        """Ctrl-C, then everything it printed. A watcher that does not stop fails the test
        with what it printed and where each of its threads was (faulthandler on SIGABRT)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(timeout=TIMEOUT_S)
            self._drain()
            printed = "\n".join(self.lines)
            raise AssertionError(f"watch did not stop on Ctrl-C:\n{printed}") from None
        self._drain()
        return "\n".join(self.lines)

    def ended(self) -> tuple[int, str]:
        """Its exit status and everything it printed, once it has ended on its own."""
        self._drain()
        return self.process.wait(timeout=TIMEOUT_S), "\n".join(self.lines)

    def _drain(self) -> None:
        until(Watched(self._changed, lambda: self._closed), timeout=TIMEOUT_S, what="its output")


@contextmanager
def launched(folder: Path, *args: str, env: dict[str, str]) -> Iterator[Watching]:
    """`bgremover watch folder *args`, just started; killed after if still running."""
    process = subprocess.Popen(
        [*WATCH, str(folder), *args],
        env={**os.environ, **env, "NO_COLOR": "1", "COLUMNS": "250", "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield Watching(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def watching(folder: Path, *args: str, env: dict[str, str]) -> Iterator[Watching]:
    """`bgremover watch`, once it says it is watching."""
    with launched(folder, *args, env=env) as watch:
        watch.wait_for("Watching ")
        yield watch


def results(out: Path) -> list[str]:
    """The files under ``out`` (not through links), hidden ones left out."""
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
