"""Progress coalescing: at most one progress event per job per interval, the latest always."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class ProgressThrottle:
    """At most one progress event per key per interval; the latest value always gets out.

    The first update after a quiet interval is published at once (low latency); later ones
    within the interval are held and the newest is flushed when the interval ends.
    """

    def __init__(self, publish: Callable[[str, dict[str, Any]], None], interval: float) -> None:
        self._publish = publish
        self._interval = interval
        self._lock = threading.Lock()
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, dict[str, Any]] = {}
        self._timer_running = False

    def offer(self, key: str, data: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            wait = self._interval - (now - self._last_sent.get(key, -1e9))
            send = wait <= 0 and key not in self._held
            if send:
                self._last_sent[key] = now
            else:
                self._held[key] = data
                self._ensure_timer(max(wait, 0.0))
        if send:
            self._publish(key, data)

    def discard(self, key: str) -> None:
        """Forget a held update: a lifecycle event about the same thing supersedes it.
        Returns once no held update for it can be published any more."""
        with self._lock:
            self._held.pop(key, None)
            self._last_sent.pop(key, None)

    def _ensure_timer(self, delay: float) -> None:
        """Flush when the earliest held key's interval ends (one timer for all keys)."""
        if not self._timer_running:
            self._timer_running = True
            timer = threading.Timer(delay, self._flush)
            timer.daemon = True
            timer.start()

    def _flush(self) -> None:
        now = time.monotonic()
        due: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            for key, data in list(self._held.items()):
                if now - self._last_sent.get(key, -1e9) >= self._interval * 0.999:
                    due.append((key, data))
                    del self._held[key]
                    self._last_sent[key] = now
            self._timer_running = False
            if self._held:
                waits = (self._interval - (now - self._last_sent.get(k, -1e9)) for k in self._held)
                self._ensure_timer(max(min(waits), 0.001))
            # Published under the lock: a ``discard`` (a lifecycle event about to go out) waits
            # for it, so a held older value can never follow the newer event.
            for key, data in due:
                self._publish(key, data)
