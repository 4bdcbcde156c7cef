"""The infrastructure under a cluster fails mid-batch, as on an operator's bad day: the
event stream's Redis dies, or PostgreSQL crashes. A web process and a Celery worker of two
processes run on servers of this test's own (tests/chaos_support.py), so only those are
hurt. The database is the truth: a job ends by what happened to its image, never by the
event stream or a database outage under it, and the event ids a client sees never go back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bgremover.jobs.bus.redis import RedisEventBus
from bgremover.jobs.database import connect, migrate
from bgremover.jobs.sequences import EventSeq

from .chaos_support import Chaos, all_ended, chaos_cluster, id_order_breaks, named_copies
from .cluster_support import Listener, jobs_seen
from .postgres_support import PrivatePostgres, private_postgres
from .redis_support import private_redis
from .waiting import until

PHOTOS = 8
END_TIMEOUT_S = 240.0
WAIT_S = 120.0


@pytest.fixture
def batch(photos: dict[str, Path], tmp_path: Path) -> list[Path]:
    """Eight photos under names of their own (the samples, repeated)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    return named_copies(list(photos.values()), folder, PHOTOS)


@pytest.fixture
def cluster(tmp_path: Path, slow_tiny_model: Path) -> Iterator[Chaos]:
    with chaos_cluster(tmp_path / "cluster", slow_tiny_model) as chaos:
        yield chaos


def _running(events: list[dict[str, Any]]) -> str | None:
    """A job that a worker has taken over, from the events seen."""
    jobs = jobs_seen(events)
    return next((i for i, j in jobs.items() if j["status"] == "processing" and j["worker"]), None)


def _completed_on_stream(job_ids: set[str]) -> Any:
    """A Listener condition: the stream shows every job of ``job_ids`` completed."""

    def check(events: list[dict[str, Any]]) -> bool:
        done: set[str] = set()
        for event in events:
            if event["event"] == "snapshot":
                jobs = event["data"]["jobs"]
                done = {j["id"] for j in jobs if j["status"] == "completed"} | (
                    done - {j["id"] for j in jobs}
                )
            elif event["event"] == "job.updated" and event["data"]["job"]["status"] == "completed":
                done.add(event["data"]["job"]["id"])
        return job_ids <= done

    return check


def _wait_for_log(chaos: Chaos, worker: Any, line: str) -> None:
    """Until the worker's log has ``line`` (what it says when it notices the fault)."""
    until(
        lambda: chaos.worker_log(worker), lambda log: line in log, WAIT_S, f"the log line {line!r}"
    )


def _batch_running(cluster: Chaos, batch: list[Path]) -> tuple[Any, Listener, set[str]]:
    """A worker of two processes, a client following the stream, and ``batch`` uploaded,
    once a job runs on the worker: the moment to inject a fault."""
    worker = cluster.start_worker(concurrency=2)
    cluster.wait_workers(2)
    listener = cluster.listen()
    listener.wait_for("the snapshot", lambda seen: seen)
    job_ids = cluster.upload(batch)
    listener.wait_for("a job running on the worker", _running)
    return worker, listener, job_ids


def _id_trail(events: list[dict[str, Any]]) -> str:
    return "SSE ids went back: " + " ".join(f"{e['event']}:{e.get('id')}" for e in events)


def _said(log: str, line: str) -> int:
    return log.count(line)


def test_redis_killed_mid_run_fails_no_job_and_event_ids_never_go_back(
    cluster: Chaos, batch: list[Path]
) -> None:
    worker, listener, job_ids = _batch_running(cluster, batch)
    before = listener.events[-1]["id"]

    killed_at = datetime.now(UTC)
    cluster.redis.stop()
    # Down for longer than publishing retries: a run ends while its events cannot go out.
    ended = cluster.wait_jobs(
        job_ids,
        lambda jobs: any(j["end_time"] and j["end_time"] > killed_at for j in jobs.values()),
        WAIT_S,
    )
    cluster.redis.start()  # empty: the stream, its ids and the worker slots are gone

    jobs = cluster.wait_jobs(job_ids, all_ended, END_TIMEOUT_S)
    failed = {i: j["error"] for i, j in jobs.items() if j["status"] != "completed"}
    assert not failed, f"jobs did not complete: {failed} (first end in the outage: {ended})"
    listener.wait_for("every job completed", _completed_on_stream(job_ids))
    assert not id_order_breaks(listener.events), _id_trail(listener.events)

    # A client that saw nothing since before the outage re-reads the state.
    late = Listener(cluster.url, last_event_id=before)
    try:
        late.wait_for("a first event", lambda seen: seen)
        assert late.events[0]["event"] == "snapshot", late.events[:3]
        assert int(late.events[0]["id"]) > int(before)
    finally:
        late.close()
    log = cluster.worker_log(worker)
    assert _said(log, "redis unreachable") >= 1, log[-3000:]
    # One line per worker process when it loses the stream, one when it is back.
    assert _said(log, "redis unreachable") <= 2, log[-3000:]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


def test_event_ids_stay_above_the_last_ones_after_redis_restarts_empty(
    tmp_path: Path, postgres: PrivatePostgres
) -> None:
    engine = connect(postgres.url)
    migrate(engine)
    with private_redis(tmp_path) as server:
        publisher = RedisEventBus(server.url, seq=EventSeq(engine), follow=False)
        reader = RedisEventBus(server.url, seq=EventSeq(engine), block=0.2)
        try:
            subscription = reader.subscribe()
            first = publisher.publish_many(
                [("job.updated", {"job": {"id": str(i)}}) for i in range(5)]
            )
            assert [subscription.get(WAIT_S).seq for _ in first] == [e.seq for e in first]  # type: ignore[union-attr]
            server.stop()
            server.start()  # empty
            # A snapshot taken now carries an id no lower than the events already sent.
            assert reader.last_seq >= first[-1].seq
            after = publisher.publish("job.updated", {"job": {"id": "after"}})
            assert after.seq > first[-1].seq, "an event id went back after Redis lost its data"
            # The reader missed nothing it had not read: it goes on, or re-reads the state.
            seen = subscription.get(WAIT_S)
            assert seen is not None and (seen.type == "resync" or seen.seq == after.seq)
            # A client of another web process, last seen before the loss, re-reads the state.
            fresh = RedisEventBus(server.url, seq=EventSeq(engine), block=0.2)
            try:
                resumed = fresh.subscribe(after=first[1].seq)
                assert [e.type for e in [resumed.get(WAIT_S)]] == ["resync"]
            finally:
                fresh.close()
        finally:
            publisher.close()
            reader.close()
            engine.dispose()


def test_a_postgres_crash_mid_run_fails_no_job(cluster: Chaos, batch: list[Path]) -> None:
    worker, listener, job_ids = _batch_running(cluster, batch)

    cluster.postgres.crash()
    _wait_for_log(cluster, worker, "database unreachable")  # a run met the outage
    cluster.postgres.start()

    jobs = cluster.wait_jobs(job_ids, all_ended, END_TIMEOUT_S)
    failed = {i: j["error"] for i, j in jobs.items() if j["status"] != "completed"}
    assert not failed, f"jobs did not complete: {failed}"
    assert len(jobs) == PHOTOS
    listener.wait_for("every job completed", _completed_on_stream(job_ids))
    assert not id_order_breaks(listener.events), _id_trail(listener.events)
    _wait_for_log(cluster, worker, "database answers again")
    # Each process says that it lost the database and that it is back, not once per retry:
    # at most twice for each of the two processes, since a query that reconnects while the
    # server is still going down sees it come back for a moment and go again (a true flap).
    for log in (cluster.worker_log(worker), (cluster.root / "web.log").read_text()):
        assert log.count("database unreachable") <= 4, log[-3000:]
        assert log.count("database answers again") == log.count("database unreachable"), log[-3000:]
