"""The event bus: one ordered stream of events with many subscribers, and progress coalescing.

Every event gets a monotonically increasing ``seq``. Subscribers are async iterators (or are
read synchronously with ``get``); each has a bounded buffer, and one that falls behind gets a
``resync`` event instead of unbounded memory or a slowed publisher: it must then re-read the
state (the SSE stream sends a fresh snapshot). Recent events are kept for replay from a
``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal[
    "snapshot",
    "resync",
    "job.updated",
    "job.progress",
    "batch.updated",
    "session.updated",
    "notification",
]


@dataclass(frozen=True)
class Event:
    seq: int
    type: EventType
    data: dict[str, Any]
    at: float = field(default_factory=time.time)


RESYNC_SEQ = 0


class Subscription:
    """One subscriber's bounded buffer; read it with ``async for`` or ``get``."""

    def __init__(self, bus: InMemoryEventBus, maxsize: int) -> None:
        self._bus = bus
        self._maxsize = maxsize
        self._items: deque[Event] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closed = False
        self.overflows = 0
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            self._wakeup: asyncio.Event | None = asyncio.Event()
        except RuntimeError:
            self._loop, self._wakeup = None, None

    def deliver(self, event: Event) -> None:
        """Called by the bus from any thread; never blocks on the reader."""
        with self._lock:
            if self._closed:
                return
            if len(self._items) >= self._maxsize:
                self._items.clear()
                self._items.append(
                    Event(RESYNC_SEQ, "resync", {"reason": "subscriber fell behind"})
                )
                self.overflows += 1
            else:
                self._items.append(event)
            self._ready.notify()
        self._wake()

    def _wake(self) -> None:
        if self._loop is not None and self._wakeup is not None:
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:  # the subscriber's loop has closed
                self.close()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds or once closed."""
        with self._lock:
            if not self._items and not self._closed:
                self._ready.wait(timeout)
            return self._items.popleft() if self._items else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        assert self._wakeup is not None, "subscribe inside the event loop to iterate async"
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.notify_all()
        self._bus.unsubscribe(self)
        if self._loop is not None and self._wakeup is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventBus(ABC):
    """Publishes events in ``seq`` order to every subscriber."""

    @abstractmethod
    def publish(self, type: EventType, data: dict[str, Any]) -> Event:
        """Assign the next ``seq`` and deliver to every current subscriber."""

    @abstractmethod
    def subscribe(self, after: int | None = None, maxsize: int = 1000) -> Subscription:
        """A new subscription. With ``after``, first replays the kept events with a larger
        seq, or starts with ``resync`` when those are no longer kept."""

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    @property
    @abstractmethod
    def last_seq(self) -> int: ...


class InMemoryEventBus(EventBus):
    """The single-process bus; the scale-out one carries the same events over Redis."""

    def __init__(self, replay: int = 10_000) -> None:
        self._lock = threading.Lock()
        # Seq starts at the clock in microseconds, so it keeps increasing across restarts and
        # a client resuming with an id from before a restart is told to resync.
        first = time.time_ns() // 1000
        self._seq = itertools.count(first)
        self._last = first - 1
        self._recent: deque[Event] = deque(maxlen=replay)
        self._subscribers: set[Subscription] = set()

    @property
    def last_seq(self) -> int:
        return self._last

    def publish(self, type: EventType, data: dict[str, Any]) -> Event:
        # Delivery happens under the lock so every subscriber sees seq order.
        with self._lock:
            event = Event(next(self._seq), type, data)
            self._last = event.seq
            self._recent.append(event)
            for subscription in list(self._subscribers):
                subscription.deliver(event)
        return event

    def subscribe(self, after: int | None = None, maxsize: int = 1000) -> Subscription:
        subscription = Subscription(self, maxsize)
        with self._lock:
            if after is not None and after != self._last:
                oldest = self._recent[0].seq if self._recent else self._last + 1
                if after + 1 < oldest or after > self._last:
                    subscription.deliver(Event(RESYNC_SEQ, "resync", {"reason": "too old"}))
                else:
                    for event in self._recent:
                        if event.seq > after:
                            subscription.deliver(event)
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)


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
            if now - self._last_sent.get(key, -1e9) >= self._interval and key not in self._held:
                self._last_sent[key] = now
                send = True
            else:
                self._held[key] = data
                send = False
                self._ensure_timer()
        if send:
            self._publish(key, data)

    def discard(self, key: str) -> None:
        """Forget a held update: a lifecycle event about the same thing supersedes it."""
        with self._lock:
            self._held.pop(key, None)
            self._last_sent.pop(key, None)

    def _ensure_timer(self) -> None:
        if not self._timer_running:
            self._timer_running = True
            timer = threading.Timer(self._interval, self._flush)
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
                self._ensure_timer()
        for key, data in due:
            self._publish(key, data)
