"""The event bus of a scale-out deployment, on Redis Streams.

Every process that publishes (web processes, workers) appends to one stream whose entry id
*is* the seq (``<seq>-0``), so an SSE ``id`` names the same event on every web process and a
client resumes on any of them. Seqs come from the database's event sequence (the truth, which
outlives Redis): a publisher takes its seqs there, and one Lua script appends at
``max(previous + 1, taken)`` atomically, so ids keep increasing in stream order even when
two publishers race, and never go back after Redis restarts empty; the database's sequence
is moved past any id Redis gave out above the taken ones. Each process runs one reader
thread that follows the stream and hands events to its local subscribers through the same
fan-out as the in-memory bus. The stream is bounded (``MAXLEN ~``); the latest notifications
are also kept in a small second stream, so a restarted web process still has them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from ...dependencies import RETRY_CAP_S, Dependencies
from ..sequences import EventSeq
from .base import (
    KEPT_NOTIFICATIONS,
    BusUnavailable,
    Event,
    EventBus,
    EventType,
    Fanout,
    Subscription,
    too_old,
)

if TYPE_CHECKING:
    from redis.typing import KeyT, StreamIdT

log = logging.getLogger(__name__)

T = TypeVar("T")
Entries = list[tuple[bytes, dict[bytes, bytes]]]
"""Stream entries as redis-py returns them (RESP2, bytes): id and fields."""

PUBLISH = """
-- KEYS: stream, seq counter, notifications stream
-- ARGV: maxlen, kept notifications, the first seq taken from the database,
--       then per event: is-notification flag ("1"/"0"), payload
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last == 0 then
  -- A stream without its counter (evicted, or deleted by hand): continue above its top.
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
end
local first = math.max(last + 1, tonumber(ARGV[3]))
local count = (#ARGV - 3) / 2
for i = 0, count - 1 do
  -- '%.0f': Lua's tostring would print a 16-digit number in exponent notation.
  local id = string.format('%.0f', first + i) .. '-0'
  local payload = ARGV[5 + 2 * i]
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id, 'e', payload)
  if ARGV[4 + 2 * i] == '1' then
    redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], id, 'e', payload)
  end
end
redis.call('SET', KEYS[2], string.format('%.0f', first + count - 1))
return string.format('%.0f', first)
"""

PAGE = 1000
"""Entries read from Redis per round trip (reader and replay)."""


class RedisUnavailable(BusUnavailable):
    """Redis could not be reached for longer than the bus keeps retrying."""

    def __init__(self, message: str) -> None:
        super().__init__("redis", message)


class RedisEventBus(EventBus):
    """Events shared by every process on one Redis, under the keys ``prefix:*``.

    ``maxlen`` bounds the stream (a client resuming further back gets a ``resync``);
    ``replay`` events are also kept in this process, so most resumes need no Redis read;
    the reader waits up to ``block`` seconds per read; publishing keeps retrying an
    unreachable Redis for ``retry_for`` seconds (a restart) before it raises
    ``RedisUnavailable``. ``seq`` is the database's event sequence. A process that only
    publishes (a worker) passes ``follow=False`` and runs no reader. The reader reports an
    outage to ``dependencies`` (one line when lost, one when back).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        seq: EventSeq,
        prefix: str = "bgremover:events",
        maxlen: int = 100_000,
        replay: int = 10_000,
        block: float = 1.0,
        retry_for: float = 1.0,
        follow: bool = True,
        dependencies: Dependencies | None = None,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise RuntimeError(
                "BGREMOVER_REDIS_URL is set but the redis package is missing: "
                "pip install 'redis>=5'"
            ) from exc
        self._where = _redacted(url)
        self._seq = seq
        self._dependencies = dependencies or Dependencies()
        # No retries inside redis-py: the reader must see an outage to check what was lost,
        # and publishing retries (and gives up) on its own schedule.
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=block + 5.0,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(PUBLISH)
        self._stream, self._counter, self._notices = (
            f"{prefix}:stream",
            f"{prefix}:seq",
            f"{prefix}:notifications",
        )
        self._wake = f"{prefix}:wake:{uuid.uuid4().hex}"
        self._maxlen, self._block, self._retry_for = maxlen, block, retry_for
        self._errors: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._fanout = Fanout(replay, self._newest(fallback=0))
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        if follow:
            self._reader = threading.Thread(target=self._follow, name="redis-events", daemon=True)
            self._reader.start()

    # Publishing.

    def publish_many(self, events: Sequence[tuple[EventType, dict[str, Any]]]) -> list[Event]:
        """Append ``events`` to the stream; this process's subscribers get them from the
        reader, like everyone else's, so they arrive once and in seq order."""
        if not events:
            return []
        taken = self._seq.take(len(events))
        at = time.time()
        args: list[str | int] = [self._maxlen, KEPT_NOTIFICATIONS, taken[0]]
        for type, data in events:
            payload = json.dumps({"type": type, "data": data, "at": at}, separators=(",", ":"))
            args += ["1" if type == "notification" else "0", payload]
        keys = [self._stream, self._counter, self._notices]
        # A retry after a lost reply may append the events twice under new seqs: harmless,
        # as events carry whole rows.
        first = int(self._retrying("publish to", lambda: self._script(keys=keys, args=args)))
        if first + len(events) - 1 > taken[-1]:
            self._seq.advance(first + len(events) - 1)  # another publisher got in between
        return [Event(first + i, type, data, at) for i, (type, data) in enumerate(events)]

    # Subscribing.

    def subscribe(self, after: int | None = None, maxsize: int = 1000) -> Subscription:
        """Live events, after replaying those newer than ``after``: from this process's
        recent events, or from Redis when they are older; an ``after`` this process has not
        reached yet (the client came from a web process that was ahead) waits for the events
        past it. Called on the event loop: only those two resumes read Redis (one round trip,
        or one per ``PAGE`` replayed events)."""
        if self._reader is None:
            raise RuntimeError("this event bus only publishes (made with follow=False)")
        subscription = Subscription(self, maxsize)
        known = after
        while True:
            with self._fanout.lock:
                if known is None or self._fanout.replays(known) or subscription.resyncing:
                    self._fanout.attach(subscription, None if subscription.resyncing else known)
                    return subscription
                floor = self._fanout.floor
            try:
                if known < floor:
                    known = self._replay(subscription, known, floor)
                elif known <= self._newest(fallback=known - 1):
                    with self._fanout.lock:
                        if known > self._fanout.last:
                            # Not here yet (or never published): skip the events up to it.
                            self._fanout.attach(subscription, known)
                            return subscription
                    continue  # the reader caught up meanwhile: replay as usual
                else:
                    known = None  # newer than any event: from another database
            except self._errors as exc:
                self._dependencies.lost("redis", f"event stream at {self._where}: {exc}")
                known = None
            if known is None:
                subscription.deliver(too_old())

    def _replay(self, subscription: Subscription, after: int, upto: int) -> int | None:
        """Deliver the stored events in ``(after, upto]``; the seq replayed up to, or None
        when some of them are no longer stored."""
        start = f"({after}-0"
        with self._client.pipeline(transaction=True) as pipe:
            pipe.xrange(self._stream, "-", "+", count=1)
            pipe.xrange(self._stream, start, f"{upto}-0", count=PAGE)
            oldest, entries = pipe.execute()
        # Trimming keeps no record of the newest seq it dropped: anything before the oldest
        # stored entry may have existed (a resume right at the edge resyncs needlessly).
        if not oldest or _seq(oldest[0][0]) > after + 1:
            return None
        while True:
            for event in _decode(entries):
                subscription.deliver(event)
            if len(entries) < PAGE or subscription.resyncing:
                return upto
            start = f"({_seq(entries[-1][0])}-0"
            entries = cast(
                Entries, self._client.xrange(self._stream, start, f"{upto}-0", count=PAGE)
            )

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._fanout.lock:
            self._fanout.detach(subscription)

    def resync(self, reason: str) -> None:
        self._fanout.resync(reason)

    @property
    def last_seq(self) -> int:
        """The newest seq any process took or published: a snapshot read after it holds
        every change an event up to it reported, and never carries a lower id than an event
        a client already has (even after Redis lost its stream)."""
        with self._fanout.lock:
            local = self._fanout.last
        return self._newest(fallback=local)

    def _newest(self, fallback: int) -> int:
        """The newest seq of the database's sequence and Redis's counter (either may be
        unreachable: then the other, or ``fallback``)."""
        newest = fallback
        with suppress(*self._errors):
            newest = max(newest, self._top())
        with suppress(BusUnavailable):
            newest = max(newest, self._seq.last())
        return newest

    def recent_notifications(self) -> list[Event]:
        try:
            entries = cast(Entries, self._client.xrange(self._notices, "-", "+"))
        except self._errors as exc:
            self._dependencies.lost("redis", f"event stream at {self._where}: {exc}")
            return []
        return _decode(entries)

    def close(self) -> None:
        """Stop the reader (within ``block`` seconds) and drop the connections."""
        self._stop.set()
        if self._reader is not None:
            with suppress(*self._errors):  # unreachable: the reader's retry wait ends at once
                self._client.xadd(self._wake, {"e": "close"})
            if self._reader is not threading.current_thread():
                self._reader.join()
            with suppress(*self._errors):
                self._client.delete(self._wake)
        self._client.close()

    # The reader.

    def _follow(self) -> None:
        """Read the stream from where this process is and fan it out, until closed; while
        Redis is unreachable, retry with backoff (say so once, and again on recovery)."""
        with self._fanout.lock:
            position = self._fanout.last
        failing_since: float | None = None
        delay = 0.05
        while not self._stop.is_set():
            try:
                if failing_since is not None:
                    position = self._rejoin(position)
                # The wake stream gets an entry only when ``close`` wants the read to end now.
                streams: dict[KeyT, StreamIdT] = {self._stream: f"{position}-0", self._wake: "0-0"}
                reply = cast(
                    list[tuple[bytes, Entries]] | None,
                    self._client.xread(streams, count=PAGE, block=int(self._block * 1000)),
                )
            except self._errors as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    self._dependencies.lost("redis", f"event stream at {self._where}: {exc}")
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_CAP_S)
                continue
            if failing_since is not None:
                self._dependencies.regained("redis")
                failing_since, delay = None, 0.05
            for stream, entries in reply or ():
                events = _decode(entries) if stream == self._stream.encode() else []
                if events:
                    self._deliver(events)
                    position = events[-1].seq

    def _deliver(self, events: list[Event]) -> None:
        with self._fanout.lock:
            self._fanout.deliver(events)

    def _rejoin(self, position: int) -> int:
        """After an outage: where to read on. When Redis lost events this process had not
        read (it restarted empty), every local subscriber resyncs."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.xrange(self._stream, "-", "+", count=1)
            pipe.get(self._counter)
            oldest, top = pipe.execute()
        top = int(top or 0)
        lost = _seq(oldest[0][0]) > position + 1 if oldest else top != position
        if not lost:
            return position
        log.warning(
            "event stream at %s lost events during the outage; clients re-read the state",
            self._where,
        )
        # The loss is an event of its own, with a seq from the database: nothing up to it
        # can be replayed, so a client resuming from before gets a snapshot, whose id is
        # above every id it has seen.
        try:
            newest = self._seq.take(1)[0]
        except BusUnavailable:
            newest = self._newest(fallback=max(top, position))
        with self._fanout.lock:
            self._fanout.restart(newest, "event stream lost")
        return newest

    def _top(self) -> int:
        return int(cast(bytes | None, self._client.get(self._counter)) or 0)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, retried with backoff while Redis is unreachable, for ``retry_for``."""
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                return call()
            except self._errors as exc:
                if time.monotonic() + delay > deadline:
                    raise RedisUnavailable(
                        f"cannot {what} the event stream at {self._where}: {exc}. Start Redis "
                        "there, or point BGREMOVER_REDIS_URL at a running one."
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)


def _seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _decode(entries: Entries) -> list[Event]:
    events = []
    for entry_id, fields in entries:
        body = json.loads(fields[b"e"])
        events.append(Event(_seq(entry_id), body["type"], body["data"], body["at"]))
    return events


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
