"""The Redis event bus against a real Redis: several bus instances (each with its own
connections and reader thread, as separate processes have) share one stream, and every
subscriber on any of them sees one ordered history that it can resume anywhere."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from bgremover.jobs.bus.base import Event, Subscription
from bgremover.jobs.bus.redis import RedisEventBus, RedisUnavailable
from bgremover.jobs.database import connect, migrate
from bgremover.jobs.sequences import EventSeq

from .redis_support import private_redis, shared_redis, unique_prefix

WAIT_S = 60.0
"""Only a bound for a test that fails: every wait returns as soon as its event arrives."""


@pytest.fixture
def stream() -> Iterator[tuple[str, str]]:
    url = shared_redis()
    with unique_prefix(url) as prefix:
        yield url, prefix


@pytest.fixture
def seq(tmp_path: Path) -> Iterator[Callable[[], EventSeq]]:
    """Makes the event sequence of one database (a SQLite file) as each process has it."""
    engine = connect(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    migrate(engine)
    yield lambda: EventSeq(engine)
    engine.dispose()


@pytest.fixture
def buses(
    stream: tuple[str, str], seq: Callable[[], EventSeq]
) -> Iterator[Callable[..., RedisEventBus]]:
    """Makes bus instances on this test's stream; closes them after the test."""
    url, prefix = stream
    with ExitStack() as made:

        def make(**options: Any) -> RedisEventBus:
            bus = RedisEventBus(url, seq=seq(), prefix=prefix, **options)
            made.callback(bus.close)
            return bus

        yield make


def take(subscription: Subscription, count: int) -> list[Event]:
    """The next ``count`` events, waiting for each."""
    events = []
    for _ in range(count):
        event = subscription.get(WAIT_S)
        assert event is not None, f"only {len(events)} of {count} events arrived"
        events.append(event)
    return events


def until_seq(subscription: Subscription, seq: int) -> list[Event]:
    """Events up to and including ``seq``."""
    events = [take(subscription, 1)[0]]
    while events[-1].seq < seq:
        events += take(subscription, 1)
    return events


def updates(bus: RedisEventBus, count: int, first: int = 0) -> list[Event]:
    return [bus.publish("job.updated", {"job": {"id": f"j{i}"}}) for i in range(first, count)]


def test_seqs_ascend_and_never_repeat_across_instances_publishing_at_once(
    buses: Callable[..., RedisEventBus],
) -> None:
    a, b, watcher = buses(follow=False), buses(), buses()
    watching = watcher.subscribe(maxsize=10_000)
    published: dict[str, list[Event]] = {"a": [], "b": []}

    def publish(name: str, bus: RedisEventBus) -> None:
        for i in range(150):
            batch = [("job.updated", {"job": {"id": f"{name}{i}-{k}"}}) for k in range(1 + i % 3)]
            published[name] += bus.publish_many(batch)

    threads = [threading.Thread(target=publish, args=item) for item in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for events in published.values():
        seqs = [e.seq for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    everything = sorted(published["a"] + published["b"], key=lambda e: e.seq)
    assert len({e.seq for e in everything}) == len(everything) == 600
    assert all(e.seq < 2**53 for e in everything), "JavaScript must read every seq exactly"
    seen = take(watching, len(everything))
    assert [(e.seq, e.data) for e in seen] == [(e.seq, e.data) for e in everything]
    assert watcher.last_seq == a.last_seq == b.last_seq == everything[-1].seq


def test_an_event_published_on_one_instance_reaches_subscribers_of_another_in_order(
    buses: Callable[..., RedisEventBus],
) -> None:
    a, b = buses(), buses()
    on_a, on_b = a.subscribe(), b.subscribe()
    published = updates(a, 50)
    published += a.publish_many([("notification", {"message": "done"}), ("batch.updated", {})])
    for subscription in (on_a, on_b):
        seen = take(subscription, len(published))
        assert [(e.seq, e.type, e.data) for e in seen] == [
            (e.seq, e.type, e.data) for e in published
        ]
    assert on_b.get(0) is None, "an event arrived twice"


def test_resuming_on_another_instance_replays_exactly_what_came_after(
    buses: Callable[..., RedisEventBus],
) -> None:
    a, b = buses(), buses(replay=5)  # b keeps only 5 events itself
    live_on_b = b.subscribe()
    published = updates(a, 30)
    take(live_on_b, 30)  # b's reader has delivered everything

    for resume_index in (26, 3):  # within b's own 5 events, then far older: from Redis
        after = published[resume_index].seq
        resumed = b.subscribe(after=after)
        expected = published[resume_index + 1 :]
        assert [e.seq for e in take(resumed, len(expected))] == [e.seq for e in expected]
        more = a.publish("job.updated", {"job": {"id": "live"}})
        assert take(resumed, 1)[0].seq == more.seq, "no gap and no repeat between replay and live"
        assert resumed.get(0) is None
        published.append(more)
        resumed.close()


class HeldReaderBus(RedisEventBus):
    """A bus whose reader is slow to deliver: it holds every read until ``gate`` opens, as a
    web process that is behind the one its client came from."""

    def __init__(self, url: str, prefix: str, seq: EventSeq) -> None:
        self.gate = threading.Event()
        super().__init__(url, seq=seq, prefix=prefix)

    def _deliver(self, events: list[Event]) -> None:
        self.gate.wait()
        super()._deliver(events)


def test_resuming_ahead_of_this_instance_waits_for_the_events_past_that_point(
    stream: tuple[str, str],
    seq: Callable[[], EventSeq],
    buses: Callable[..., RedisEventBus],
) -> None:
    url, prefix = stream
    a = buses()
    behind = HeldReaderBus(url, prefix, seq())
    try:
        published = updates(a, 10)
        resumed = behind.subscribe(after=published[3].seq)  # seen on the web process ahead
        assert resumed.get(0) is None
        behind.gate.set()
        expected = published[4:]
        assert [e.seq for e in take(resumed, len(expected))] == [e.seq for e in expected]
        assert resumed.get(0) is None
    finally:
        behind.gate.set()
        behind.close()


def test_resuming_before_the_bounded_stream_or_past_its_end_resyncs(
    stream: tuple[str, str], buses: Callable[..., RedisEventBus]
) -> None:
    url, prefix = stream
    a = buses(maxlen=10)
    published = a.publish_many([("job.updated", {"job": {"id": str(i)}}) for i in range(500)])
    with redis.Redis.from_url(url) as client:
        node = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
        length = client.xlen(f"{prefix}:stream")
    # MAXLEN ~ trims whole nodes of the stream: at most one node more than asked is kept.
    assert 10 <= length <= 10 + node

    fresh = buses(replay=5)
    too_old = fresh.subscribe(after=published[0].seq)
    assert take(too_old, 1)[0].type == "resync"
    kept = published[-length + 1].seq  # older than fresh's own events, still in Redis
    resumed = fresh.subscribe(after=kept)
    assert [e.seq for e in take(resumed, length - 2)] == [e.seq for e in published[-length + 2 :]]
    from_the_future = fresh.subscribe(after=published[-1].seq + 1_000)
    assert take(from_the_future, 1)[0].type == "resync"


def test_recent_notifications_survive_the_instance_that_published_them(
    buses: Callable[..., RedisEventBus],
) -> None:
    a = buses()
    for i in range(120):
        a.publish_many(
            [("job.updated", {"job": {"id": str(i)}}), ("notification", {"message": f"n{i}"})]
        )
    a.close()
    fresh = buses()
    kept = fresh.recent_notifications()
    assert [e.data["message"] for e in kept] == [f"n{i}" for i in range(20, 120)]
    assert [e.seq for e in kept] == sorted(e.seq for e in kept)
    assert all(e.type == "notification" for e in kept)


def test_a_redis_restart_resyncs_subscribers_and_seqs_keep_increasing(
    tmp_path: Path, seq: Callable[[], EventSeq], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bgremover")
    with private_redis(tmp_path) as server:
        a = RedisEventBus(server.url, seq=seq(), retry_for=0.2, follow=False)
        b = RedisEventBus(server.url, seq=seq(), block=0.2)
        try:
            on_b = b.subscribe()
            before = a.publish("job.updated", {"job": {"id": "before"}})
            assert take(on_b, 1)[0].seq == before.seq
            server.stop()
            with pytest.raises(RedisUnavailable, match="BGREMOVER_REDIS_URL"):
                a.publish("job.updated", {"job": {"id": "lost"}})
            server.start()  # empty: the stream and its counter are gone
            assert take(on_b, 1)[0].type == "resync"
            after = a.publish("job.updated", {"job": {"id": "after"}})
            assert after.seq > before.seq, "a seq was reused after the restart"
            assert [e.data for e in until_seq(on_b, after.seq)][-1] == after.data
            said = [r.getMessage() for r in caplog.records if r.name == "bgremover.dependencies"]
            assert sum("redis unreachable" in m for m in said) == 1, said
            assert sum("redis answers again" in m for m in said) == 1, said
        finally:
            a.close()
            b.close()
