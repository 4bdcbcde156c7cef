"""Publishing the job system's events without ever failing what they report.

The database is the truth; events only tell subscribers about it. So when the bus cannot
take an event (Redis is down, or the database its ids come from), the change it reports
stands: the event is dropped, the process says once that the dependency is lost, and a
background thread retries with backoff until the bus answers, then publishes one ``resync``:
every subscriber, in every web process, re-reads the state from the database and so gets
whatever the dropped events said. Until then later events are dropped at once, so a run
never waits on a dead bus.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..dependencies import RETRY_CAP_S, RETRY_START_S, Dependencies
from .bus.base import BusUnavailable, EventBus, EventType

RESYNC_REASON = "events were lost while the event stream was unreachable"


class Publisher:
    """Hands events to ``bus``; thread-safe. See the module's docstring."""

    def __init__(self, bus: EventBus, dependencies: Dependencies) -> None:
        self._bus = bus
        self._dependencies = dependencies
        self._lock = threading.Lock()
        self._mender: threading.Thread | None = None
        """Runs while events were dropped and no resync has gone out since."""
        self._dropped = 0
        self._stop = threading.Event()
        self._published: Counter[str] = Counter()

    def publish_many(self, events: Sequence[tuple[EventType, dict[str, Any]]]) -> bool:
        """Whether the bus took ``events``; False when they were dropped (a resync follows
        once the bus answers)."""
        if not events:
            return True
        with self._lock:
            if self._mender is not None:
                self._dropped += 1  # the resync to come covers these events
                return False
        try:
            self._bus.publish_many(events)
        except BusUnavailable as exc:
            self._dependencies.lost(exc.dependency, exc)
            self._mend(exc.dependency)
            return False
        with self._lock:
            self._published.update(type for type, _ in events)
        return True

    def published(self) -> dict[str, int]:
        """Events this process handed to the bus since it started, by type (the resyncs
        after an outage are not counted)."""
        with self._lock:
            return dict(self._published)

    def close(self) -> None:
        """Stop retrying (the process is stopping: its subscribers go with it)."""
        self._stop.set()
        with self._lock:
            mender = self._mender
        if mender is not None:
            mender.join()

    def _mend(self, dependency: str) -> None:
        with self._lock:
            if self._mender is not None or self._stop.is_set():
                return
            self._mender = threading.Thread(
                target=self._resync, args=(dependency,), name="event-resync", daemon=True
            )
            self._mender.start()

    def _resync(self, dependency: str) -> None:
        """Publish a resync once the bus answers; again while events were dropped during
        the publish (a subscriber may have re-read the state before their changes)."""
        delay = RETRY_START_S
        while not self._stop.wait(delay):
            with self._lock:
                dropped = self._dropped
            try:
                self._bus.publish("resync", {"reason": RESYNC_REASON})
            except Exception as exc:  # whatever it is, this thread must outlive it
                dependency = exc.dependency if isinstance(exc, BusUnavailable) else dependency
                self._dependencies.lost(dependency, exc)
                delay = min(delay * 2, RETRY_CAP_S)
                continue
            self._dependencies.regained(dependency)
            with self._lock:
                if self._dropped == dropped:
                    self._mender = None
                    return
            delay = 0
