"""The event bus: one ordered stream of events with many subscribers, and progress coalescing.

Every event gets a monotonically increasing ``seq``. Subscribers are async iterators (or are
read synchronously with ``get``); each has a bounded buffer, and one that falls behind gets a
``resync`` event instead of unbounded memory or a slowed publisher: it must then re-read the
state (the SSE stream sends a fresh snapshot). Recent events are kept for replay from a
``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

EventType = Literal[
    "snapshot",
    "resync",
    "job.updated",
    "job.deleted",
    "job.progress",
    "batch.updated",
    "session.updated",
    "notification",
    "health.updated",
    "queue.updated",
]


# Payloads: events travel as ``(type, data)`` with JSON data; these models fix the shape of the
# ones that are not whole snapshots of a row (``jobs.notices`` builds every event).
Published = tuple[EventType, dict[str, Any]]
NoticeKind = Literal["success", "error", "warning", "info"]


class Notification(BaseModel):
    kind: NoticeKind
    title: str
    body: str
    job_id: str | None = None
    batch_id: str | None = None
    session_id: str | None = None


class JobProgress(BaseModel):
    """A running job's progress between stage changes (coalesced per job)."""

    id: str
    batch_id: str
    progress: float
    stage: str
    eta: float
    eta_at: float
    """When ``eta`` was estimated (``time.time()``): a client counts down from there."""
    sent_at: float
    """When the worker reported it (``time.time()``), for latency measurement."""


class JobRef(BaseModel):
    id: str


class JobDeleted(BaseModel):
    """``job.deleted``: the job and its files are gone; a client drops it."""

    job: JobRef


@dataclass(frozen=True)
class Event:
    seq: int
    type: EventType
    data: dict[str, Any]
    at: float = field(default_factory=time.time)
    wire: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    """Encodings of this event kept by transports, so N subscribers cost one encoding."""


class BusUnavailable(RuntimeError):
    """The bus cannot take or deliver events now: ``dependency`` (the database its seqs come
    from, or Redis) does not answer. Those events are lost; subscribers re-read the state
    once it answers again (``publishing.Publisher`` sees to it)."""

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency


RESYNC_SEQ = 0
KEPT_NOTIFICATIONS = 100
MAX_LAG_S = 10.0
"""A subscriber whose oldest unread event is older than this is resynced instead."""


class _Slot:
    """A buffered event; a newer progress event for the same job empties the older slot."""

    __slots__ = ("event",)

    def __init__(self, event: Event | None) -> None:
        self.event = event


class Subscription:
    """One subscriber's bounded buffer; read it with ``async for``, ``next_batch`` or ``get``.

    Progress events are coalesced per job inside the buffer (a reader that is behind gets
    the latest value, not every tick); lifecycle events are kept in order. A reader too far
    behind (buffer full, or its oldest event older than ``MAX_LAG_S``) gets one ``resync``.
    """

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._maxsize = maxsize
        self._items: deque[_Slot] = deque()
        self._progress: dict[str, _Slot] = {}
        self._live = 0  # slots still holding an event
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closed = False
        self._wake_pending = False
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
            if self._behind(event):
                self._items.clear()
                self._progress.clear()
                self._items.append(
                    _Slot(Event(RESYNC_SEQ, "resync", {"reason": "subscriber fell behind"}))
                )
                self._live = 1
                self.overflows += 1
            elif event.type == "resync" or not self._is_resyncing():
                slot = _Slot(event)
                if event.type == "job.progress":
                    older = self._progress.get(event.data["id"])
                    if older is not None and older.event is not None:
                        older.event = None
                        self._live -= 1
                    self._progress[event.data["id"]] = slot
                self._items.append(slot)
                self._live += 1
            self._ready.notify()
            wake = not self._wake_pending
            self._wake_pending = True
        if wake:
            self._wake()

    def _behind(self, event: Event) -> bool:
        if self._live >= self._maxsize:
            return True
        while self._items and self._items[0].event is None:
            self._items.popleft()  # emptied by a newer progress event
        return bool(self._items) and event.at - self._items[0].event.at > MAX_LAG_S  # type: ignore[union-attr]

    def _is_resyncing(self) -> bool:
        """A pending resync makes every buffered event before a fresh snapshot moot."""
        return (
            bool(self._items)
            and self._items[0].event is not None
            and (self._items[0].event.type == "resync")
        )

    @property
    def resyncing(self) -> bool:
        """Whether a resync waits to be read (events delivered now would be dropped)."""
        with self._lock:
            return self._is_resyncing()

    def _wake(self) -> None:
        if self._loop is not None and self._wakeup is not None:
            try:
                self._loop.call_soon_threadsafe(self._set_wakeup)
            except RuntimeError:  # the subscriber's loop has closed
                self.close()

    def _set_wakeup(self) -> None:
        with self._lock:
            self._wake_pending = False
        if self._wakeup is not None:
            self._wakeup.set()

    def _take(self, limit: int) -> list[Event]:
        taken: list[Event] = []
        while self._items and len(taken) < limit:
            event = self._items.popleft().event
            if event is None:
                continue
            self._live -= 1
            if event.type == "job.progress" and self._progress.get(event.data["id"]) is not None:
                slot = self._progress[event.data["id"]]
                if slot.event is event:
                    del self._progress[event.data["id"]]
            taken.append(event)
        if not self._items:
            self._wake_pending = False
        return taken

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds or once closed."""
        with self._lock:
            if not self._has_items() and not self._closed:
                self._ready.wait(timeout)
            taken = self._take(1)
            return taken[0] if taken else None

    def _has_items(self) -> bool:
        return self._live > 0

    async def next_batch(self, limit: int = 500) -> list[Event]:
        """Every event waiting (up to ``limit``), waiting for at least one; [] once closed."""
        assert self._wakeup is not None, "subscribe inside the event loop to read async"
        while True:
            with self._lock:
                taken = self._take(limit)
                if taken or self._closed:
                    return taken
                self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        assert self._wakeup is not None, "subscribe inside the event loop to iterate async"
        while True:
            with self._lock:
                taken = self._take(1)
                if taken:
                    return taken[0]
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

    shared = False
    """Whether every process's subscribers get what any process publishes (Redis); else a
    change made by another process is told here by this process (``pauses``)."""

    def publish(self, type: EventType, data: dict[str, Any]) -> Event:
        """Assign the next ``seq`` and deliver to every current subscriber."""
        return self.publish_many([(type, data)])[0]

    @abstractmethod
    def publish_many(self, events: Sequence[tuple[EventType, dict[str, Any]]]) -> list[Event]:
        """Publish several events with ascending seqs, taken in one go."""

    @abstractmethod
    def subscribe(self, after: int | None = None, maxsize: int = 1000) -> Subscription:
        """A new subscription. With ``after``, first replays the kept events with a larger
        seq, or starts with ``resync`` when those are no longer kept."""

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    @property
    @abstractmethod
    def last_seq(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - most buses hold nothing to release
        """Release what the bus holds (connections, threads); subscribers are not served
        afterwards."""

    @abstractmethod
    def recent_notifications(self) -> list[Event]:
        """The latest notifications, oldest first: a client that had to resync gets the ones
        it missed with its snapshot instead of losing them."""

    @abstractmethod
    def resync(self, reason: str) -> None:
        """Every subscriber in this process re-reads the state (a fresh snapshot): for a
        change that could not be published (the seq's database has no room to write)."""


SeqSource = Callable[[int], list[int]]
"""Hands out ``n`` new seqs in ascending order (``sequences.EventSeq.take``)."""


class Fanout:
    """What every bus does in its own process: deliver events in seq order to the local
    subscribers and keep the recent ones for replay. Callers hold ``lock`` around each use,
    so a subscriber's replay and its live events never interleave."""

    def __init__(self, replay: int, last: int) -> None:
        self.lock = threading.Lock()
        self.last = last
        """The newest seq delivered here."""
        self.floor = last
        """Events up to this seq cannot be replayed from here (before this bus, or dropped)."""
        self._recent: deque[Event] = deque(maxlen=replay)
        self._subscribers: dict[Subscription, int] = {}
        """Each subscriber with the seq it has already seen (it gets only newer events)."""

    def deliver(self, events: Sequence[Event]) -> None:
        """Hand ``events`` (ascending, all newer than ``last``) to every subscriber."""
        kept = self._recent.maxlen or 0
        dropped = len(self._recent) + len(events) - kept
        if dropped > 0:
            old = len(self._recent)
            newest_dropped = (
                self._recent[dropped - 1] if dropped <= old else events[dropped - old - 1]
            )
            self.floor = newest_dropped.seq
        self._recent.extend(events)
        self.last = events[-1].seq
        subscribers = list(self._subscribers.items())
        for event in events:
            for subscription, seen in subscribers:
                if event.seq > seen:
                    subscription.deliver(event)

    def replays(self, after: int) -> bool:
        """Whether every event newer than ``after`` that this process delivered is kept."""
        return self.floor <= after <= self.last

    def attach(self, subscription: Subscription, after: int | None) -> None:
        """Replay the kept events newer than ``after`` (which ``replays``), then go live; an
        ``after`` ahead of ``last`` skips the events up to it as they arrive."""
        if after is not None:
            for event in self._recent:
                if event.seq > after:
                    subscription.deliver(event)
        self._subscribers[subscription] = self.last if after is None else max(after, self.last)

    def detach(self, subscription: Subscription) -> None:
        self._subscribers.pop(subscription, None)

    def resync(self, reason: str) -> None:
        """``restart`` where the last delivery left off: for a change that could not be
        published (``EventBus.resync``). Takes ``lock`` itself."""
        with self.lock:
            self.restart(self.last, reason)

    def restart(self, last: int, reason: str) -> None:
        """Events were lost before reaching this process: everyone re-reads the state."""
        self._recent.clear()
        self.last = self.floor = last
        for subscription in self._subscribers:
            subscription.deliver(Event(RESYNC_SEQ, "resync", {"reason": reason}))
        self._subscribers = dict.fromkeys(self._subscribers, last)


def too_old() -> Event:
    """What a subscriber resuming after events that are no longer kept gets first."""
    return Event(RESYNC_SEQ, "resync", {"reason": "too old"})
