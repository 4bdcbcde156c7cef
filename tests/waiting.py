"""One way for tests to wait: ``until(source, predicate, timeout)``.

A source is the state a test watches plus how it learns that the state may have changed:
a ``threading.Condition`` its writer notifies (``Watched``), an event bus whose events are
the changes (``Followed``), or, for state that sends no events (an HTTP API, a database, a
log file, a process), a plain function re-read at a short interval (``Polled``). Each wakes
on the change it can see, so no test sleeps a guessed time, and every wait fails with what it
waited for and what it last saw.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import pytest

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

WAIT_S = 240.0
"""Generous: a cluster starts processes and loads models on a busy machine; a hang still
fails before pytest-timeout's 300 s."""
POLL_EVERY_S = 0.05
"""How often a ``Polled`` source is re-read: short beside any wait, light on the machine."""


class Source(Protocol[T_co]):
    def read(self) -> T_co:
        """The state now."""

    def watch(self, holds: Callable[[], bool], timeout: float) -> bool:
        """Block until ``holds()`` (re-checked after each change); False after ``timeout``."""


class Polled(Generic[T]):
    """State that sends no events, re-read every ``every`` seconds."""

    def __init__(self, read: Callable[[], T], every: float = POLL_EVERY_S) -> None:
        self.read = read
        self._every = every

    def watch(self, holds: Callable[[], bool], timeout: float) -> bool:
        tick = threading.Event()  # never set: a wait that no signal cuts short
        deadline = time.monotonic() + timeout
        while not holds():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            tick.wait(min(self._every, left))
        return True


class Watched(Generic[T]):
    """State guarded by ``condition``, whose writers call ``notify_all`` after each change;
    ``read`` runs with the lock held."""

    def __init__(self, condition: threading.Condition, read: Callable[[], T]) -> None:
        self._condition = condition
        self.read = read

    def watch(self, holds: Callable[[], bool], timeout: float) -> bool:
        with self._condition:
            return self._condition.wait_for(holds, timeout)


class Followed(Generic[T]):
    """State that changes with the events of a job-system bus: re-read after each event (the
    subscription opens before the first read, so no change slips between)."""

    def __init__(self, bus: Any, read: Callable[[], T]) -> None:
        self._bus = bus
        self.read = read

    def watch(self, holds: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._bus.subscribe() as events:
            while not holds():
                left = deadline - time.monotonic()
                if left <= 0 or events.get(timeout=left) is None:
                    return False
        return True


def until(
    source: Source[T] | Callable[[], T],
    predicate: Callable[[T], object] = bool,
    timeout: float = WAIT_S,
    what: str = "the expected state",
) -> T:
    """What ``source`` reads once ``predicate`` holds for it (a plain function is
    ``Polled``); fails the test after ``timeout`` seconds, naming ``what`` and the last read."""
    watched: Source[T] = Polled(source) if callable(source) else source
    last: list[T] = []

    def holds() -> bool:
        last[:] = [watched.read()]
        return bool(predicate(last[0]))

    if not watched.watch(holds, timeout):
        seen = repr(last[0])[-2000:] if last else "nothing"
        pytest.fail(f"waited {timeout:g} s for {what}; last saw: {seen}")
    return last[0]
