"""Whether the results store takes writes: what dispatch waits for and /api/health shows.

A run that finds the store full, read-only or failing tells the gate; from then on the
dispatcher starts nothing (each run would compute a result only to lose it) and instead
probes the store (a small write and delete) with a growing delay, until a write succeeds.
Each change is announced once (an event, so every open UI shows or clears its banner at once);
where the event cannot be published yet (on SQLite its seq is a write, and the database may
share the full disk), open pages are resynced instead: their snapshot carries the state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from ..dependencies import DependencyState
from ..storage import Storage, StorageError, outage_reason

log = logging.getLogger(__name__)

FIRST_PROBE_DELAY_S = 0.5
MAX_PROBE_DELAY_S = 4.0
"""Probes back off to this: the store's recovery is noticed within about this long."""


class StorageGate:
    """Thread-safe: runs report failures from any thread; the dispatcher asks ``ready``."""

    def __init__(
        self,
        storage: Storage,
        announce: Callable[[DependencyState], None],
        now: Callable[[], datetime],
        resync: Callable[[str], None] = lambda reason: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._announce = announce
        self._resync = resync
        self._resynced: DependencyState | None = None
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._state = DependencyState(ok=True)
        self._delay = FIRST_PROBE_DELAY_S
        self._next_probe = 0.0
        self._unannounced: DependencyState | None = None

    @property
    def state(self) -> DependencyState:
        with self._lock:
            return self._state

    def failed(self, reason: str, *, announce: bool = True) -> None:
        """The store failed a write (``reason`` for people): hold dispatch until a probe
        passes. ``announce=False`` for a failure another process has announced already."""
        with self._lock:
            if not self._state.ok and self._state.error == reason:
                return
            since = self._now() if self._state.ok else self._state.since
            if self._state.ok:
                self._delay = FIRST_PROBE_DELAY_S
                self._next_probe = self._monotonic() + self._delay
                log.warning("%s: dispatch waits until a write succeeds", reason)
            self._state = DependencyState(ok=False, since=since, error=reason)
            if announce:
                self._unannounced = self._state
        self._send()

    def suspect(self) -> None:
        """Something beside the store failed to write for want of room (the database, often
        on the same disk): probe the store now, so a full disk is announced and holds
        dispatch even while no run is under way to meet it."""
        if not self.state.ok:
            return  # ``ready`` probes already
        try:
            self._storage.probe()
        except (OSError, StorageError) as exc:
            self.failed(outage_reason(exc) or "results storage cannot be written")

    def ready(self) -> bool:
        """Whether to dispatch: the store works, or a probe due now shows it works again."""
        self._send()  # an announcement the bus could not take before (its disk was full too)
        with self._lock:
            if self._state.ok:
                return True
            if self._monotonic() < self._next_probe:
                return False
            down = self._state
        try:
            self._storage.probe()
        except (OSError, StorageError) as exc:
            reason = outage_reason(exc) or "results storage cannot be written"
            with self._lock:
                self._delay = min(self._delay * 2, MAX_PROBE_DELAY_S)
                self._next_probe = self._monotonic() + self._delay
            log.debug("storage probe failed: %s", exc)
            if reason != down.error:
                self.failed(reason)
            return False
        with self._lock:
            if self._state is not down:  # a run failed meanwhile: that is the news
                return False
            self._state = self._unannounced = DependencyState(ok=True, since=self._now())
        seconds = (self._now() - down.since).total_seconds() if down.since else 0.0
        log.info("results storage takes writes again (after %.0f s); dispatching", seconds)
        self._send()
        return True

    def _send(self) -> None:
        with self._lock:
            state, self._unannounced = self._unannounced, None
        if state is None:
            return
        try:
            self._announce(state)
        except Exception as exc:  # kept for the next round; the change itself stands
            with self._lock:
                if self._unannounced is None:
                    self._unannounced = state
                first = self._resynced is not state
                self._resynced = state
            if first:
                # The event has no seq yet (on SQLite the seq is a write to the same full
                # disk): open pages re-read the state, storage included, from a snapshot.
                log.warning("could not announce the storage state (%s); retrying", exc)
                self._resync("the storage state changed")
