"""Pause and resume of the queue and of a batch, on a real database (SQLite file and
PostgreSQL): the claim itself skips paused work, the state outlives the service, ETAs of
paused work say so, and every client hears of it."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from bgremover.jobs.bus.redis import RedisEventBus
from bgremover.jobs.database import connect, migrate
from bgremover.jobs.sequences import EventSeq
from bgremover.jobs.tables import JobRow
from bgremover.workers.base import Finished

from .jobs_support import Harness, build_harness, claim, drain
from .redis_support import shared_redis, unique_prefix
from .test_cli import run_cli


def test_a_paused_queue_starts_nothing_until_resumed(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    with h.bus.subscribe() as events:
        queue = h.service.pause_queue("cli")
        said = drain(events)
    assert queue.paused and queue.paused_by == "cli" and queue.paused_at == h.clock.now
    assert queue.counts.pending == 2 and queue.counts.total == 2
    assert h.service.claim_next() is None
    updates = [e.data["queue"] for e in said if e.type == "queue.updated"]
    assert updates == [queue.model_dump(mode="json")], "GET /api/queue and the event differ"
    batches = [e.data["batch"] for e in said if e.type == "batch.updated"]
    assert batches and batches[-1]["id"] == created.batch.id
    assert batches[-1]["estimated_time_remaining"] is None
    assert batches[-1]["eta_reason"] == "paused"
    job = h.service.get_job(created.jobs[0].id)
    assert job.status == "pending" and job.estimated_time_remaining is None
    assert job.eta_reason == "paused"
    session = h.service.get_session(created.batch.session_id)
    assert session.estimated_time_remaining is None and session.eta_reason == "paused"

    with h.bus.subscribe() as events:
        resumed = h.service.resume_queue()
        said = drain(events)
    assert not resumed.paused and resumed.paused_by is None and h.wakes
    batch = [e.data["batch"] for e in said if e.type == "batch.updated"][-1]
    assert batch["estimated_time_remaining"] > 0 and batch["eta_reason"] is None
    assert h.service.get_job(created.jobs[0].id).estimated_time_remaining is not None
    assert claim(h).job_id == created.jobs[0].id


def test_a_paused_batch_waits_while_the_others_run(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    first = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    second = h.service.create_batch(h.uploads(photos["chelsea.jpg"]))
    paused = h.service.pause_batch(first.batch.id)
    assert paused.paused and paused.eta_reason == "paused"
    assert h.service.queue().paused_batches == [first.batch.id]
    assert claim(h).job_id == second.jobs[0].id
    assert h.service.claim_next() is None
    assert h.service.get_job(first.jobs[0].id).eta_reason == "paused"

    resumed = h.service.resume_batch(first.batch.id)
    assert not resumed.paused and resumed.estimated_time_remaining is not None
    assert claim(h).job_id == first.jobs[0].id


def test_pausing_with_cancel_running_puts_running_jobs_back_uncounted(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    item = claim(h)
    h.service.pause_queue("token", cancel_running=True)
    assert h.cancels == [item.job_id], "the run held here was not stopped"
    job = h.service.get_job(item.job_id)
    assert job.status == "pending" and job.attempt == 1 and job.worker is None
    with h.service._transactions() as db:
        assert db.get(JobRow, item.job_id).lost_runs == 0  # type: ignore[union-attr]
    batch = h.service.get_batch(created.batch.id)
    assert batch.counts.pending == 2 and batch.counts.processing == 0
    # The stopped run's late end changes nothing.
    h.service.handle(Finished(item.job_id, item.dispatch_id, 600, 400, "png", 6, {}))
    assert h.service.get_job(item.job_id).status == "pending"
    assert h.service.claim_next() is None
    h.service.resume_queue()
    assert claim(h).job_id == item.job_id


def test_the_pause_outlives_the_service_and_reaches_other_processes(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    h.service.follow_pauses()  # what this process has seen so far
    other = build_harness(h.root / "other", h.url)  # another process: a bus of its own
    other.service.pause_queue("login:0123abcd")
    other.service.pause_batch(created.batch.id)
    other.service.close()

    with h.bus.subscribe() as events:
        h.service.follow_pauses()  # its next scheduler round
        said = drain(events)
    queue = [e.data["queue"] for e in said if e.type == "queue.updated"]
    assert queue and queue[0]["paused"] and queue[0]["paused_by"] == "login:0123abcd"
    assert [e.data["batch"]["paused"] for e in said if e.type == "batch.updated"] == [True]

    restarted = h.reopen()
    assert restarted.service.claim_next() is None
    state = restarted.service.queue()
    assert state.paused and state.paused_batches == [created.batch.id]
    assert restarted.service.active_snapshot().queue == state
    restarted.service.resume_queue()
    assert restarted.service.claim_next() is None, "the batch is still paused"
    restarted.service.resume_batch(created.batch.id)
    assert claim(restarted).job_id == created.jobs[0].id


def test_the_cli_pauses_and_resumes_the_queue_of_the_servers_database(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    h = build_harness(tmp_path, f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    env = {"BGREMOVER_DATABASE_URL": h.url, "BGREMOVER_DATA_DIR": str(tmp_path)}
    paused = run_cli("queue", "pause", env=env)
    assert paused.returncode == 0, paused.stderr
    assert "Queue paused by cli" in paused.stdout and "1 pending" in paused.stdout
    assert h.service.queue().paused and h.service.claim_next() is None
    status = run_cli("queue", "status", "--json", env=env)
    assert json.loads(status.stdout) == h.service.queue().model_dump(mode="json")
    resumed = run_cli("queue", "resume", env=env)
    assert "Queue running" in resumed.stdout
    assert claim(h).job_id
    refused = run_cli("queue", "status", "--server", "http://127.0.0.1:9", env=env)
    assert refused.returncode == 2 and "cannot reach the server" in refused.stderr


def test_on_a_redis_bus_every_process_hears_the_pause_once(tmp_path: Path) -> None:
    url = shared_redis()
    database = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    engine = connect(database)
    migrate(engine)
    with unique_prefix(url) as prefix, ExitStack() as stack:

        def process(name: str) -> Harness:
            bus = RedisEventBus(url, seq=EventSeq(engine), prefix=prefix)
            stack.callback(bus.close)
            return build_harness(tmp_path / name, database, bus=bus)  # type: ignore[arg-type]

        a, b = process("a"), process("b")
        b.service.follow_pauses()
        with b.bus.subscribe() as events:
            a.service.pause_queue("token")
            b.service.follow_pauses()  # B's round: the shared bus already carried it
            said = [e for e in drain(events, timeout=1.0) if e.type == "queue.updated"]
        assert [e.data["queue"]["paused_by"] for e in said] == ["token"]
        assert b.service.claim_next() is None
