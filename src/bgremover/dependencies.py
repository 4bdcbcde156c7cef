"""What one process knows about the services it depends on (the database, Redis, the
broker, storage), from its own use of them.

Every part of the process that meets an outage reports it here, so the process says once
that it lost a dependency and once that it has it back, however many threads retry
meanwhile, and ``/api/health`` shows since when a dependency is missing and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_START_S = 0.1
RETRY_CAP_S = 1.0
"""Waits between retries double up to this: once a dependency is back, work resumes within
about a second (recovery is measured by bench/chaos_bench.py)."""


@dataclass(frozen=True)
class DependencyState:
    """One dependency as ``/api/health`` and the ``health.updated`` event show it."""

    ok: bool
    since: datetime | None = None
    """When it last changed (None: working since this process started)."""
    error: str | None = None
    """What is wrong, for people, never with a server path: "results storage is full"."""

    def as_json(self) -> dict[str, Any]:
        since = self.since.isoformat() if self.since is not None else None
        return {"ok": self.ok, "since": since, "error": self.error}


class Dependencies:
    """The state of each named dependency in this process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, DependencyState] = {}

    def lost(self, name: str, error: BaseException | str) -> None:
        """``name`` failed; logs one warning when it was not already known to be down."""
        reason = first_line(error)
        with self._lock:
            state = self._states.get(name)
            if state is not None and not state.ok:
                return
            self._states[name] = DependencyState(False, _now(), reason)
        log.warning("%s unreachable (%s); retrying until it answers", name, reason)

    def regained(self, name: str) -> None:
        """``name`` answered; logs one line when it was down."""
        with self._lock:
            state = self._states.get(name)
            if state is None or state.ok:
                if state is None:
                    self._states[name] = DependencyState(True, _now())
                return
            self._states[name] = DependencyState(True, _now())
        down_s = (_now() - state.since).total_seconds() if state.since else 0.0
        log.info("%s answers again after %.1f s", name, down_s)

    def observe(self, name: str, error: BaseException | str | None) -> None:
        """The outcome of an active check: ``error`` None means it answered."""
        if error is None:
            self.regained(name)
        else:
            self.lost(name, error)

    def states(self) -> dict[str, DependencyState]:
        with self._lock:
            return dict(self._states)

    def retry(
        self,
        name: str,
        call: Callable[[], T],
        outage: Callable[[BaseException], bool],
        stop: threading.Event | None = None,
    ) -> T:
        """``call()``, retried with backoff for as long as it fails with an ``outage`` of
        ``name`` (other errors propagate), or until ``stop`` is set (the last error then
        propagates)."""
        delay = RETRY_START_S
        while True:
            try:
                result = call()
            except Exception as exc:
                if not outage(exc) or (stop is not None and stop.is_set()):
                    raise
                self.lost(name, exc)
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)
                continue
            self.regained(name)
            return result


def first_line(error: BaseException | str) -> str:
    """What went wrong, in one line: a database driver's own words without SQLAlchemy's
    trailer ("database or disk is full"), else the error's first line."""
    error = getattr(error, "orig", None) or error
    text = str(error).strip() or (type(error).__name__ if isinstance(error, BaseException) else "")
    return text.splitlines()[0][:300]


def _now() -> datetime:
    return datetime.now(UTC)
