"""The job service on a real database (SQLite file and PostgreSQL), driven as the scheduler
and workers drive it: claims, then the reports a worker sends."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from PIL import Image
from sqlalchemy import text

from bgremover.engine.options import RemoveOptions
from bgremover.jobs.database import connect, migrate
from bgremover.jobs.eta import queue_wait
from bgremover.jobs.eta.clock import WARM_UP_SECONDS, StageClock
from bgremover.jobs.exchange import QueueState
from bgremover.jobs.states import InvalidTransition, NotFound
from bgremover.jobs.tables import Base
from bgremover.workers.base import (
    Calibration,
    Failed,
    Finished,
    Lost,
    StageProgress,
    Started,
    Stopped,
)

from .jobs_support import (
    COFFEE_PIXELS,
    STAGE_TIMINGS,
    Harness,
    build_harness,
    claim,
    drain,
    run_to_completion,
)


def test_a_submission_is_a_named_batch_in_the_current_session(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    first = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    assert first.batch.name.startswith("2 images · ")
    assert [j.status for j in first.jobs] == ["pending", "pending"]
    assert first.jobs[0].width == 600 and first.jobs[0].media_type == "image/jpeg"
    assert first.batch.counts.total == 2 and first.batch.counts.pending == 2
    assert h.wakes, "the scheduler was not woken"

    h.clock.advance(minutes=4)
    second = h.service.create_batch(h.uploads(photos["astronaut.jpg"]))
    assert second.batch.session_id == first.batch.session_id
    assert second.batch.name.startswith("1 image · ")

    h.clock.advance(minutes=5, seconds=1)  # past the window since the last activity
    third = h.service.create_batch(h.uploads(photos["astronaut.jpg"]))
    assert third.batch.session_id != first.batch.session_id
    session = h.service.get_session(first.batch.session_id)
    assert session.counts.total == 3 and len(session.batch_ids) == 2


def test_identical_uploads_are_stored_once_by_content_hash(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["coffee.jpg"]))
    stored = [p for p in (h.root / "files" / "originals").rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].name != "coffee.jpg"


def test_manual_batches_take_later_uploads(harness: Harness, photos: dict[str, Path]) -> None:
    h = harness
    manual = h.service.create_manual_batch("Product shots")
    assert manual.manual and manual.counts.total == 0 and manual.status == "pending"
    added = h.service.create_batch(h.uploads(photos["coffee.jpg"]), batch_id=manual.id)
    assert added.batch.id == manual.id and added.batch.name == "Product shots"
    assert added.batch.counts.total == 1
    auto = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    with pytest.raises(InvalidTransition):
        h.service.create_batch(h.uploads(photos["coffee.jpg"]), batch_id=auto.batch.id)
    with pytest.raises(NotFound):
        h.service.create_batch(h.uploads(photos["coffee.jpg"]), batch_id="nope")


def test_claims_take_highest_priority_then_oldest(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    low = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"])).jobs
    high = h.service.create_batch(h.uploads(photos["astronaut.jpg"]), priority=5).jobs
    assert claim(h).job_id == high[0].id
    assert claim(h).job_id == low[0].id
    assert claim(h).job_id == low[1].id
    assert h.service.claim_next() is None


def test_move_to_front_and_priority_change_reorder_the_queue(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    jobs = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 3)).jobs
    h.service.move_to_front(jobs[2].id)
    assert claim(h).job_id == jobs[2].id
    h.service.set_priority(jobs[1].id, 3)
    assert claim(h).job_id == jobs[1].id
    with pytest.raises(InvalidTransition):
        h.service.move_to_front(jobs[1].id)  # already processing


def test_a_run_reports_stages_then_completes_with_its_result(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    with h.bus.subscribe() as events:
        item = claim(h)
        run_to_completion(h, item)
        seen = drain(events)
    job = h.service.get_job(item.job_id)
    assert job.status == "completed" and job.progress == 100.0
    assert job.result is not None and (job.result.width, job.result.height) == (600, 400)
    assert job.worker == "test-worker" and job.start_time and job.end_time
    batch = h.service.get_batch(created.batch.id)
    assert batch.status == "completed" and batch.counts.completed == 1 and batch.progress == 100
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    stages = [e.data["job"]["stage"] for e in seen if e.type == "job.updated"]
    assert [s for s in dict.fromkeys(stages) if s] == list(STAGE_TIMINGS)
    notices = [e.data for e in seen if e.type == "notification"]
    assert notices and notices[-1]["kind"] == "success" and "1 done" in notices[-1]["body"]


def test_progress_is_monotonic_and_coalesced(harness: Harness, photos: dict[str, Path]) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    item = claim(h)
    with h.bus.subscribe() as events:
        began = time.monotonic()
        h.service.handle(StageProgress(item.job_id, item.dispatch_id, "AI model", 0.0, time.time()))
        for i in range(50):
            h.service.handle(
                StageProgress(item.job_id, item.dispatch_id, "AI model", i / 100, time.time())
            )
        final = h.service.get_job(item.job_id).progress
        seen = []
        while not seen or seen[-1].data["progress"] < final:  # the last value always gets out
            event = events.get(timeout=30)
            assert event is not None, f"the latest progress never arrived; got {seen}"
            if event.type == "job.progress":
                seen.append(event)
        elapsed = time.monotonic() - began
    # At most one event per interval (plus the first, sent at once), however slow the
    # machine was: the bound grows with the time the 50 updates actually took.
    interval = h.settings.progress_update_interval.total_seconds()
    assert len(seen) <= elapsed / interval + 2, f"{len(seen)} events in {elapsed:.2f} s"
    values = [e.data["progress"] for e in seen]
    assert values == sorted(values), "progress went backwards"


def test_a_late_completion_never_overwrites_a_cancel(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    item = claim(h)
    h.service.cancel_job(item.job_id)
    assert h.cancels == [item.job_id], "the running worker was not told to stop"
    run_to_completion(h, item)
    job = h.service.get_job(item.job_id)
    assert job.status == "cancelled" and job.result is None
    assert not h.service.files.storage.exists(item.result_key), "the unwanted result was kept"
    with pytest.raises(InvalidTransition):
        h.service.cancel_job(item.job_id)


def test_failure_records_the_error_and_notifies(harness: Harness, photos: dict[str, Path]) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    item = claim(h)
    with h.bus.subscribe() as events:
        h.service.handle(
            Failed(item.job_id, item.dispatch_id, "not_an_image", "x.jpg: not an image")
        )
        seen = drain(events)
    job = h.service.get_job(item.job_id)
    assert job.status == "failed" and job.error is not None
    assert (job.error.code, job.error.message) == ("not_an_image", "x.jpg: not an image")
    kinds = [e.data["kind"] for e in seen if e.type == "notification"]
    assert kinds == ["error", "error"]  # the job failed; its batch ended with nothing done


def test_retry_makes_a_linked_new_attempt_and_keeps_batch_counts(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    first = claim(h)
    h.service.handle(Failed(first.job_id, first.dispatch_id, "worker_crashed", "died"))
    retried = h.service.retry_job(first.job_id).jobs[0]
    assert (retried.attempt, retried.retried_from, retried.status) == (2, first.job_id, "pending")
    batch = h.service.get_batch(created.batch.id)
    assert (batch.counts.total, batch.counts.pending, batch.counts.failed) == (2, 2, 0)
    with pytest.raises(InvalidTransition):
        h.service.retry_job(first.job_id)  # already retried
    with pytest.raises(InvalidTransition):
        h.service.retry_job(retried.id)  # pending: nothing to retry


def test_cancel_and_retry_a_whole_batch(harness: Harness, photos: dict[str, Path]) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 3))
    running = claim(h)
    result = h.service.cancel_batch(created.batch.id)
    assert sorted(result.cancelled) == sorted(j.id for j in created.jobs)
    assert h.cancels == [running.job_id]
    batch = h.service.get_batch(created.batch.id)
    assert batch.status == "cancelled" and batch.counts.cancelled == 3
    again = h.service.retry_batch(created.batch.id)
    assert len(again.jobs) == 3
    assert h.service.get_batch(created.batch.id).counts.pending == 3


def test_a_run_no_worker_started_is_queued_again_uncounted_when_its_lease_expires(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    waiting = claim(h)  # sent to a worker that never picked it up
    other = h.reopen()
    h.clock.advance(seconds=h.settings.lease_duration.total_seconds() + 1)
    assert other.service.recover() == 1
    job = other.service.get_job(waiting.job_id)
    assert (job.status, job.attempt) == ("pending", 1), "no worker lost a run it never had"


def _dispatching(h: Harness) -> Harness:
    """``h`` as a web process that sends its runs to remote (Celery) workers."""
    h.service.attach(
        cancel_running=h.cancels.append, wake=lambda: h.wakes.append(1), runs_elsewhere=True
    )
    return h


def test_a_run_sent_to_workers_that_none_takes_over_is_queued_again_uncounted_at_its_deadline(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = _dispatching(harness)
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    sent = claim(h)  # its message died with a worker before it was taken over
    other = h.reopen()
    deadline = h.settings.takeover_timeout.total_seconds()
    h.clock.advance(seconds=deadline - 1)
    h.service.renew_leases()
    assert other.service.recover() == 0, "re-queued before its take-over deadline"
    h.clock.advance(seconds=2)
    h.service.renew_leases()  # the dispatcher does not keep a run alive that nobody runs
    assert other.service.recover() == 1
    job = other.service.get_job(sent.job_id)
    assert (job.status, job.attempt, job.worker) == ("pending", 1, None), "it never ran"
    # The lost message, should it still arrive, is dropped by its dispatch id.
    worker = h.reopen()
    assert not worker.service.take_over(sent, "late worker")
    again = claim(h)
    assert again.job_id == sent.job_id and again.dispatch_id != sent.dispatch_id
    assert not worker.service.take_over(sent, "late worker")
    assert worker.service.take_over(again, "worker")
    run_to_completion(worker, again)
    assert worker.service.get_job(sent.job_id).status == "completed"


def test_a_run_taken_over_in_time_is_its_workers_and_not_queued_again(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = _dispatching(harness)
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    sent = claim(h)
    worker = h.reopen()
    h.clock.advance(seconds=h.settings.takeover_timeout.total_seconds() - 1)
    assert worker.service.take_over(sent, "worker")
    assert not h.reopen().service.take_over(sent, "duplicate delivery")
    h.clock.advance(seconds=2)  # past the take-over deadline, within the worker's lease
    assert h.service.recover() == 0
    for _ in range(3):  # the worker renews its lease; nobody else does
        h.clock.advance(seconds=h.settings.lease_duration.total_seconds() - 1)
        worker.service.renew_leases()
        assert h.service.recover() == 0
    h.clock.advance(seconds=h.settings.lease_duration.total_seconds() + 1)  # worker gone
    assert h.service.recover() == 1
    job = h.service.get_job(sent.job_id)
    assert (job.status, job.attempt) == ("pending", 2), "a run a worker held was lost"


def test_a_run_whose_lease_expired_is_queued_again_and_its_late_report_ignored(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 3))
    running = claim(h)
    h.service.handle(Started(running.job_id, running.dispatch_id, worker="local-1"))
    other = h.reopen()  # another process on the same database
    assert other.service.recover() == 0, "a run whose owner renews its lease was taken"
    h.clock.advance(seconds=h.settings.lease_duration.total_seconds() - 1)
    h.service.renew_leases()  # the owner is alive: the lease moves on
    h.clock.advance(seconds=2)
    assert other.service.recover() == 0
    h.clock.advance(seconds=h.settings.lease_duration.total_seconds() + 1)  # owner silent
    assert other.service.recover() == 1
    job = other.service.get_job(running.job_id)
    assert (job.status, job.attempt) == ("pending", 2)
    assert len(other.service.list_jobs(status=["pending"])[0]) == 3
    # The old owner learns at its next renewal that the run is no longer its own.
    h.service.renew_leases()
    assert h.cancels == [running.job_id]
    # A report from the run that lost its lease changes nothing, in either process.
    late = Finished(running.job_id, running.dispatch_id, 1, 1, "png", 1, STAGE_TIMINGS)
    for service in (h.service, other.service):
        service.handle(late)
        assert service.get_job(running.job_id).status == "pending"


def test_a_lost_worker_requeues_its_job_until_max_attempts_then_fails_it(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    job_id = created.jobs[0].id
    with h.bus.subscribe() as events:
        for attempt in range(1, h.settings.max_attempts + 1):
            item = claim(h)
            assert item.job_id == job_id
            assert h.service.get_job(job_id).attempt == attempt
            h.service.handle(Lost(item.job_id, item.dispatch_id, "killed by signal SIGKILL"))
        seen = drain(events)
    job = h.service.get_job(job_id)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "worker_lost"
    assert "3 times" in job.error.message and "SIGKILL" in job.error.message
    assert h.service.claim_next() is None, "a poison job kept looping"
    warnings = [e.data for e in seen if e.type == "notification" and e.data["kind"] == "warning"]
    assert [w["title"] for w in warnings] == ["Retrying coffee.jpg"] * 2
    batch = h.service.get_batch(created.batch.id)
    assert (batch.status, batch.counts.failed, batch.counts.total) == ("failed", 1, 1)


def test_a_run_the_store_cut_short_waits_out_a_backoff_then_runs_again(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    job_id = created.jobs[0].id
    full = "results storage is full"
    backoff = h.settings.outage_backoff.total_seconds()
    for attempt in range(1, h.settings.max_attempts):
        item = claim(h)
        h.service.handle(Lost(item.job_id, item.dispatch_id, full, dependency="storage"))
        job = h.service.get_job(job_id)
        assert (job.status, job.attempt, job.error) == ("pending", attempt + 1, None)
        wait = backoff * 2 ** (attempt - 1)  # doubled per loss
        h.clock.advance(seconds=wait - 0.5)
        assert h.service.claim_next() is None, "claimed again before its backoff"
        h.clock.advance(seconds=1)
    assert not h.service.storage_gate.state.ok
    assert h.service.storage_gate.state.error == full
    # Counted like a lost worker: the last allowed loss fails it, saying what failed.
    item = claim(h)
    h.service.handle(Lost(item.job_id, item.dispatch_id, full, dependency="storage"))
    job = h.service.get_job(job_id)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "storage_unavailable"
    assert full in job.error.message and "worker" not in job.error.message


def test_a_graceful_stop_puts_running_jobs_back_without_counting_a_loss(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 2))
    first, second = claim(h), claim(h)
    h.service.handle(StageProgress(first.job_id, first.dispatch_id, "AI model", 0.5, time.time()))
    assert h.service.release_all() == 2
    for item in (first, second):
        job = h.service.get_job(item.job_id)
        assert (job.status, job.attempt, job.progress, job.stage) == ("pending", 1, 0.0, None)
        # The cancelled runs report Stopped as the workers exit: that ends nothing.
        h.service.handle(Stopped(item.job_id, item.dispatch_id))
        assert h.service.get_job(item.job_id).status == "pending"
    restarted = h.reopen()
    assert restarted.service.recover() == 0
    assert {claim(restarted).job_id, claim(restarted).job_id} == {first.job_id, second.job_id}


def test_delete_removes_the_job_and_files_nobody_else_uses(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    jobs = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["coffee.jpg"])).jobs
    original, _ = h.service.job_files(jobs[0].id)
    h.service.delete_job(jobs[0].id)
    assert h.service.files.storage.exists(original), "the other job still needs the original"
    h.service.delete_job(jobs[1].id)
    assert not h.service.files.storage.exists(original)
    with pytest.raises(NotFound):
        h.service.get_job(jobs[0].id)


def test_a_deleted_job_is_announced_by_its_own_event_type(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    job = h.service.create_batch(h.uploads(photos["coffee.jpg"])).jobs[0]
    with h.service.bus.subscribe() as events:
        h.service.delete_job(job.id)
        seen = [event for event in iter(lambda: events.get(timeout=0), None)]
    deleted = [event for event in seen if event.type == "job.deleted"]
    assert [event.data for event in deleted] == [{"job": {"id": job.id}}]
    assert not [e for e in seen if e.type == "job.updated" and e.data["job"]["id"] == job.id]


def test_cleanup_removes_old_ended_jobs_only(harness: Harness, photos: dict[str, Path]) -> None:
    h = harness
    old = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"])).jobs
    item = claim(h)
    run_to_completion(h, item)
    h.clock.advance(days=8)
    fresh = h.service.create_batch(h.uploads(photos["astronaut.jpg"])).jobs
    result = h.service.cleanup()
    assert result.jobs_deleted == 1 and result.files_deleted == 2  # result and original
    remaining = {j.id for j in h.service.list_jobs()[0]}
    assert remaining == {old[1].id, fresh[0].id}, "a pending job was cleaned up"
    batch = h.service.get_batch(h.service.get_job(old[1].id).batch_id)
    assert (batch.counts.total, batch.status) == (1, "pending")  # counters and status follow


def test_export_and_import_carry_the_queue_to_another_database(
    harness: Harness, photos: dict[str, Path], tmp_path: Path
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    item = claim(h)
    h.service.handle(Failed(item.job_id, item.dispatch_id, "boom", "failed"))
    h.service.retry_job(item.job_id)
    state = QueueState.model_validate(h.service.export_state())
    other = build_harness(tmp_path / "other", f"sqlite:///{tmp_path / 'other.sqlite3'}")
    result = other.service.import_state(state)
    assert (result.sessions, result.batches, result.jobs, result.skipped) == (1, 1, 3, 0)
    jobs, total = other.service.list_jobs(include_superseded=True)
    assert total == 3
    # The originals live in the first store, so the pending ones say so instead of hanging.
    assert {j.error.code for j in jobs if j.error} >= {"original_missing"}
    assert other.service.import_state(state).skipped == 5


def test_listing_filters_and_pages(harness: Harness, photos: dict[str, Path]) -> None:
    h = harness
    a = h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    h.clock.advance(hours=1)
    b = h.service.create_batch(h.uploads(photos["astronaut.jpg"]))
    assert h.service.list_jobs(q="CHEL")[1] == 1
    assert h.service.list_jobs(batch_id=a.batch.id)[1] == 2
    assert h.service.list_jobs(session_id=b.batch.session_id)[1] == 1
    assert h.service.list_jobs(since=h.clock.now - timedelta(minutes=1))[1] == 1
    page, total = h.service.list_jobs(limit=2, offset=2)
    assert total == 3 and len(page) == 1
    assert h.service.list_jobs(q="100%_")[1] == 0  # LIKE wildcards are literal
    assert h.service.stats().jobs["pending"] == 3


def test_eta_learns_from_finished_jobs_and_excludes_queue_time(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 5))
    default = created.jobs[0].estimated_time_remaining
    assert default is not None and default > 0
    for _ in range(8):
        h.service.clock.observe(0, {k: v * 2 for k, v in STAGE_TIMINGS.items()})
    learned = h.service.get_job(created.jobs[0].id).estimated_time_remaining
    assert learned == pytest.approx(2 * sum(STAGE_TIMINGS.values()), rel=0.1)
    h.clock.advance(minutes=10)  # waiting in the queue does not change the estimate
    assert h.service.get_job(created.jobs[0].id).estimated_time_remaining == learned
    per_job = 2 * sum(STAGE_TIMINGS.values())
    batch_eta = h.service.get_batch(created.batch.id).estimated_time_remaining
    assert batch_eta == pytest.approx(5 * per_job / 2, rel=0.15)  # two slots share five jobs


def test_migrations_match_the_table_definitions(database_url: str) -> None:
    engine = connect(database_url)
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        if engine.dialect.name == "sqlite":
            # SQLite's reflection loses an index column's DESC: check those by their SQL.
            ordered = {"ix_jobs_claim", "ix_jobs_batch_queue"}
            diff = [d for d in diff if not (d[0].endswith("_index") and d[1].name in ordered)]
            sql = dict(
                connection.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
                ).all()
            )
            assert "(status, priority DESC, queue_order)" in sql["ix_jobs_claim"]
            assert "(batch_id, status, priority DESC, queue_order)" in sql["ix_jobs_batch_queue"]
            plan = connection.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE status = 'pending' "
                    "ORDER BY priority DESC, queue_order LIMIT 1"
                )
            ).all()
            assert "TEMP B-TREE" not in str(plan), (
                f"the claim sorts instead of using the index: {plan}"
            )
    assert diff == []


def test_a_stopped_run_the_user_did_not_cancel_goes_back_to_the_queue(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"], photos["chelsea.jpg"]))
    stopped, cancelled = claim(h), claim(h)
    h.service.handle(Stopped(stopped.job_id, stopped.dispatch_id))
    job = h.service.get_job(stopped.job_id)
    assert (job.status, job.attempt) == ("pending", 1), "a stop nobody asked for ended a job"
    h.service.cancel_job(cancelled.job_id)
    h.service.handle(Stopped(cancelled.job_id, cancelled.dispatch_id))
    assert h.service.get_job(cancelled.job_id).status == "cancelled"


def test_derive_queues_a_new_job_on_the_same_original_with_new_options(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    source = created.jobs[0]
    derived = h.service.derive_job(source.id, RemoveOptions(background_color="#ff0000"))
    assert derived.status == "pending" and derived.attempt == 1 and derived.retried_from is None
    assert derived.options == {"background_color": [255, 0, 0, 255]}
    assert h.service.job_files(derived.id)[0] == h.service.job_files(source.id)[0]
    batch = h.service.get_batch(created.batch.id)
    assert (batch.counts.total, batch.counts.pending) == (2, 2)


def test_the_first_measured_job_replaces_the_eta_defaults() -> None:
    clock = StageClock()
    clock.observe(0, {k: v * 10 for k, v in STAGE_TIMINGS.items()})
    assert clock.job_seconds(0) == pytest.approx(10 * sum(STAGE_TIMINGS.values()))
    clock.observe(0, STAGE_TIMINGS)  # later ones are averaged in
    assert 10 * sum(STAGE_TIMINGS.values()) > clock.job_seconds(0) > sum(STAGE_TIMINGS.values())


def test_the_queue_ahead_of_a_batch_is_counted_right_from_either_end(
    harness: Harness, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_wait, "AHEAD_CAP", 4)  # so each of the four ways of counting is used
    h = harness
    big = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 5))
    middle = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 2))
    back = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 5))
    front = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 3), priority=1)
    with h.service._transactions() as db:
        counted = {
            name: queue_wait.pending_ahead(db, [created.batch.id])
            for name, created in (
                ("front", front),
                ("big", big),
                ("middle", middle),
                ("back", back),
            )
        }
    # front: counted from the front; big: the jobs before its first plus its own; middle:
    # exactly (too many on either side); back: all pending less none behind it.
    assert counted == {"front": 3, "big": 8, "middle": 10, "back": 15}


def test_learned_stage_timings_survive_a_restart_and_reach_other_processes(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    run_to_completion(h, claim(h))
    learned = h.service.clock.job_seconds(0, COFFEE_PIXELS)
    assert learned == pytest.approx(sum(STAGE_TIMINGS.values()))
    other = h.reopen()  # a restart, or another process on the same database
    assert other.service.clock.job_seconds(0, COFFEE_PIXELS) == pytest.approx(learned)
    # What one process learns next, the other adopts at its next refresh.
    other.service.create_batch(other.uploads(photos["coffee.jpg"]))
    run_to_completion(other, claim(other))
    h.service.refresh_timings()
    assert h.service.clock.job_seconds(0) == pytest.approx(other.service.clock.job_seconds(0))


def test_a_warm_up_calibrates_the_sizes_no_job_has_measured(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    run_to_completion(h, claim(h))  # bucket 0 is measured now
    warm_up = {stage: 0.5 for stage in STAGE_TIMINGS} | {"AI model": 3.0}
    h.service.handle(Calibration("local-1", 1_000_000, warm_up))
    measured = h.service.clock.job_seconds(0, COFFEE_PIXELS)
    assert measured == pytest.approx(sum(STAGE_TIMINGS.values()))
    # A 24 MP image: the model takes as long, the pixel-bound stages 24 times the warm-up's;
    # a 12 MP one in the same bucket half that.
    assert h.service.clock.job_seconds(3, 24_000_000) == pytest.approx(3.0 + 5 * 0.5 * 24)
    assert h.service.clock.job_seconds(3, 12_000_000) == pytest.approx(3.0 + 5 * 0.5 * 12)


def test_the_first_run_on_a_machine_no_warm_up_timed_seeds_the_other_sizes(
    harness: Harness, photos: dict[str, Path]
) -> None:
    """The first job cancels the warm-up: its own run then tells the other sizes how fast
    this machine is, as the warm-up would have, until a job of their size measures them."""
    h = harness
    before = h.service.clock.job_seconds(3, 24_000_000)
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    run_to_completion(h, claim(h))
    model = STAGE_TIMINGS["AI model"]
    pixel_bound = sum(STAGE_TIMINGS.values()) - model
    seeded = model + pixel_bound * 24_000_000 / COFFEE_PIXELS
    assert h.service.clock.job_seconds(3, 24_000_000) == pytest.approx(seeded)
    assert seeded != pytest.approx(before)
    # Only the first run seeds: the next one teaches its own size alone.
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    faster = {stage: seconds / 2 for stage, seconds in STAGE_TIMINGS.items()}
    run_to_completion(h, claim(h), timings=faster)
    assert h.service.clock.job_seconds(3, 24_000_000) == pytest.approx(seeded)


def test_batch_percent_weighs_each_job_by_the_time_its_size_takes(
    harness: Harness, photos: dict[str, Path], tmp_path: Path
) -> None:
    h = harness
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (90, 90, 90)).save(big)  # 6 MP: another size bucket
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], big))
    small_s, big_s = h.service.clock.job_seconds(0), h.service.clock.job_seconds(2)
    assert big_s > 1.2 * small_s
    first = claim(h)
    assert first.job_id == created.jobs[0].id
    h.service.handle(Failed(first.job_id, first.dispatch_id, "not_an_image", "x"))
    batch = h.service.get_batch(created.batch.id)
    assert batch.progress == pytest.approx(100 * small_s / (small_s + big_s), abs=0.01)
    assert batch.work_seconds == pytest.approx(small_s + big_s, abs=0.01)
    # Its ETA prices the big job waiting by its own size, and says when it was made.
    assert batch.estimated_time_remaining == pytest.approx(big_s / 2, rel=0.01)
    assert batch.eta_at == h.clock.now


def test_a_batch_percent_is_the_share_of_its_wall_time_the_warm_up_and_queue_included(
    harness: Harness, photos: dict[str, Path]
) -> None:
    """What every client gets (snapshots and events) is the percent the UI shows: it moves
    while the jobs wait for the workers and in the queue, never goes back, ends at 100, and
    a session of one batch shows the same."""
    h = harness
    created = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 3))
    batch_id, session_id = created.batch.id, created.batch.session_id
    eta = created.batch.estimated_time_remaining
    assert created.batch.progress == 0.0 and eta
    shown: list[float] = []

    def look() -> float:
        batch = h.service.get_batch(batch_id)
        assert h.service.get_session(session_id).progress == batch.progress
        shown.append(batch.progress)
        return batch.progress

    # The workers are still loading their model: no work is done, but time passes, and
    # their warm-up (at the default speed: nothing has timed this machine yet) is in the ETA.
    h.clock.advance(seconds=WARM_UP_SECONDS / 2)
    assert look() == pytest.approx(100 * WARM_UP_SECONDS / 2 / eta, abs=0.01)
    with h.bus.subscribe() as events:  # the stream hears it without any job's event
        h.clock.advance(seconds=WARM_UP_SECONDS / 2)
        assert h.service.publish_progress() == 1
        sent = {e.type: e.data for e in drain(events)}
    assert sent["batch.updated"]["batch"]["progress"] == look() > shown[0]
    assert sent["session.updated"]["session"]["progress"] == shown[-1]
    # A warm-up that takes longer than expected: the work will be as much slower, so the
    # ETA grows and the percent holds.
    h.clock.advance(seconds=WARM_UP_SECONDS)
    assert look() == pytest.approx(shown[-2], abs=0.01)
    for _ in range(3):
        item = claim(h)
        h.clock.advance(seconds=1)
        look()
        run_to_completion(h, item)
        look()
    assert shown == sorted(shown), f"the batch's percent went back: {shown}"
    assert shown[-1] == 100.0


def test_a_batch_percent_goes_on_after_a_pause_from_where_it_stood(
    harness: Harness, photos: dict[str, Path]
) -> None:
    """The time a pause held a batch is not its work's time: after a resume the bar goes on
    from the share it had, not near 100 % because the pause was long; overlapping pauses of
    the queue and of the batch count once."""
    h = harness
    batch_id = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 3)).batch.id
    h.clock.advance(seconds=2)
    before = h.service.get_batch(batch_id).progress
    assert 0 < before < 50
    h.service.pause_queue("test")
    h.clock.advance(seconds=600)
    h.service.resume_queue()
    assert h.service.get_batch(batch_id).progress == pytest.approx(before, abs=0.5)
    h.service.pause_batch(batch_id)
    h.clock.advance(seconds=100)
    h.service.pause_queue("test")
    h.clock.advance(seconds=100)
    h.service.resume_batch(batch_id)
    h.clock.advance(seconds=100)
    h.service.resume_queue()
    assert h.service.get_batch(batch_id).progress == pytest.approx(before, abs=0.5)
    h.clock.advance(seconds=2)
    assert h.service.get_batch(batch_id).progress > before


def test_a_session_counts_its_ended_batches_whole_and_its_active_ones_by_time(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    first = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    run_to_completion(h, claim(h))
    second = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    assert second.batch.session_id == first.batch.session_id
    h.clock.advance(seconds=2)
    batch = h.service.get_batch(second.batch.id)
    assert batch.progress > 0  # by time: no work of it is done
    # Both batches weigh the same (one image of one size each).
    session = h.service.get_session(first.batch.session_id)
    assert session.progress == pytest.approx((100 + batch.progress) / 2, abs=0.01)


def test_a_retried_batch_goes_on_from_the_share_of_time_it_was_active(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    item = claim(h)
    h.clock.advance(seconds=10)
    h.service.handle(Failed(item.job_id, item.dispatch_id, "not_an_image", "x"))
    assert h.service.get_batch(created.batch.id).progress == 100.0
    h.clock.advance(hours=1)  # the hour it spent ended is not time it was active
    h.service.retry_batch(created.batch.id)
    batch = h.service.get_batch(created.batch.id)
    eta = batch.estimated_time_remaining
    assert eta
    assert batch.progress == pytest.approx(100 * 10 / (10 + eta), abs=0.01)


def test_stats_report_how_far_the_estimates_were_off(
    harness: Harness, photos: dict[str, Path]
) -> None:
    h = harness
    assert h.service.stats().eta_accuracy is None
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    item = claim(h)
    predicted = h.service.clock.job_seconds(0, COFFEE_PIXELS)
    h.clock.advance(seconds=2 * predicted)  # it took twice as long as expected
    run_to_completion(h, item)
    accuracy = h.service.stats().eta_accuracy
    assert accuracy is not None and accuracy.jobs == 1
    assert accuracy.median_error == pytest.approx(0.5, abs=0.01)
    assert accuracy.mean_bias == pytest.approx(-0.5, abs=0.01)


def test_a_snapshot_carries_the_notifications_a_resyncing_client_missed(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    h = build_harness(tmp_path, f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    seen_until = h.bus.last_seq
    item = claim(h)
    h.service.handle(Failed(item.job_id, item.dispatch_id, "not_an_image", "x.jpg: not an image"))
    with h.bus.subscribe(after=seen_until - 10**6) as late:  # far too old to replay
        assert late.get(1).type == "resync"  # type: ignore[union-attr]
    snapshot = h.service.active_snapshot()
    missed = [n for n in snapshot.notifications if n["seq"] > seen_until]
    assert [n["title"] for n in missed] == [
        "Couldn't process coffee.jpg",
        "Batch finished: " + (h.service.get_batch(h.service.get_job(item.job_id).batch_id).name),
    ]


def test_a_batch_percent_never_goes_back_when_the_estimates_change(
    harness: Harness, photos: dict[str, Path], tmp_path: Path
) -> None:
    h = harness
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (90, 90, 90)).save(big)
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], big))
    first = claim(h)
    h.service.handle(Failed(first.job_id, first.dispatch_id, "not_an_image", "x"))
    shown = h.service.get_batch(created.batch.id).progress
    assert shown > 0
    # Big images turn out to take far longer than thought: the work left is repriced...
    h.service.clock.observe(2, {stage: 10.0 for stage in STAGE_TIMINGS})
    # ...but what was shown does not shrink; more jobs in the batch may make it.
    assert h.service.get_batch(created.batch.id).progress == shown
    h.service.derive_job(first.job_id, RemoveOptions(background_color="#ffffff"))
    assert h.service.get_batch(created.batch.id).progress < shown
