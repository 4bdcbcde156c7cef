"""The event bus of one process: seqs from the database's sequence (or the clock, for a bus
that shares nothing), delivered to this process's subscribers."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from .base import (
    KEPT_NOTIFICATIONS,
    Event,
    EventBus,
    EventType,
    Fanout,
    SeqSource,
    Subscription,
    too_old,
)


class _LocalSeq:
    """A seq for a bus that shares nothing: it starts at the clock in microseconds, so it
    keeps increasing across restarts."""

    def __init__(self) -> None:
        self._next = itertools.count(time.time_ns() // 1000)

    def __call__(self, count: int) -> list[int]:
        return [next(self._next) for _ in range(count)]


class InMemoryEventBus(EventBus):
    """Delivers to this process's subscribers; ``seq`` comes from ``seq`` (the database's
    sequence in a ``JobSystem``, so every process means the same thing by an event id). The
    scale-out bus (``bus.redis.RedisEventBus``) carries the same events over Redis."""

    def __init__(self, replay: int = 10_000, *, seq: SeqSource | None = None, last: int = 0):
        self._seq: SeqSource = seq or _LocalSeq()
        self._fanout = Fanout(replay, last if seq is not None else self._seq(1)[0])
        self._notifications: deque[Event] = deque(maxlen=KEPT_NOTIFICATIONS)

    @property
    def last_seq(self) -> int:
        return self._fanout.last

    def recent_notifications(self) -> list[Event]:
        with self._fanout.lock:
            return list(self._notifications)

    def publish_many(self, events: Sequence[tuple[EventType, dict[str, Any]]]) -> list[Event]:
        if not events:
            return []
        # Seqs are taken and delivered under the lock so every subscriber sees seq order.
        with self._fanout.lock:
            seqs = self._seq(len(events))
            published = [
                Event(seq, type, data) for seq, (type, data) in zip(seqs, events, strict=True)
            ]
            self._notifications.extend(e for e in published if e.type == "notification")
            self._fanout.deliver(published)
        return published

    def subscribe(self, after: int | None = None, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, maxsize)
        with self._fanout.lock:
            # Seqs are shared with other processes, so they have gaps: what counts is
            # whether an event newer than ``after`` was dropped.
            if after is not None and not self._fanout.replays(after):
                subscription.deliver(too_old())
                after = None
            self._fanout.attach(subscription, after)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._fanout.lock:
            self._fanout.detach(subscription)

    def resync(self, reason: str) -> None:
        self._fanout.resync(reason)
