"""A Hypothesis state machine over two job services sharing one database, as two processes
would: random submissions, claims on either, progress, completions, failures, lost workers,
stops, cancels and retries from either side, late reports, crashes, graceful stops and lease
expiry. After every step: no job is lost, counts add up, ended jobs stay ended, progress
never goes back within a run, every running job has exactly one holder, and each batch's
status agrees with its jobs."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import func, select

from bgremover.engine.stages import STAGES
from bgremover.jobs.states import TERMINAL, InvalidTransition, batch_status
from bgremover.jobs.tables import BatchRow, JobRow
from bgremover.workers.base import Failed, Finished, Lost, StageProgress, Stopped, WorkItem

from .conftest import SAMPLES
from .jobs_support import Harness, build_harness

PHOTO = SAMPLES / "coffee.jpg"
TIMINGS = {stage.value: 0.1 for stage in STAGES}
PROCESSES = st.integers(0, 1)


@dataclass(frozen=True)
class Run:
    item: WorkItem
    holder: Harness
    """The service (process) whose executor runs it and hears its reports."""


class JobServiceMachine(RuleBasedStateMachine):
    runs = Bundle("runs")
    ended = Bundle("ended")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="bgremover-stateful-"))
        first = build_harness(self.root, f"sqlite:///{self.root / 'jobs.sqlite3'}")
        self.processes = [first, first.reopen()]  # one database, one clock, two processes
        self.created: list[str] = []  # in creation order, so draws replay the same way
        self.final: dict[str, str] = {}  # job id -> the terminal status it reached
        self.last_progress: dict[str, float] = {}

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def any(self) -> Harness:
        return self.processes[0]

    def row(self, job_id: str) -> JobRow:
        with self.any.service._transactions() as db:
            row = db.get(JobRow, job_id)
            assert row is not None
            return row

    def alive(self, run: Run | None) -> bool:
        """Reports come only from runs whose process still exists."""
        return run is not None and any(run.holder is p for p in self.processes)

    @rule(which=PROCESSES, count=st.integers(1, 3), priority=st.integers(0, 2))
    def submit(self, which: int, count: int, priority: int) -> None:
        h = self.processes[which]
        created = h.service.create_batch(h.uploads(*[PHOTO] * count), priority=priority)
        self.created += [job.id for job in created.jobs]

    @rule(target=runs, which=PROCESSES)
    def start(self, which: int) -> Run | None:
        h = self.processes[which]
        item = h.service.claim_next()
        if item is None:
            return None
        self.last_progress[item.job_id] = 0.0
        row = self.row(item.job_id)
        assert (row.status, row.dispatch_id, row.lease_owner) == (
            "processing",
            item.dispatch_id,
            h.service.owner,
        )
        return Run(item, h)

    @rule(run=runs, stage=st.sampled_from(STAGES), fraction=st.floats(0, 1))
    def progress(self, run: Run | None, stage: object, fraction: float) -> None:
        if run is None or not self.alive(run):
            return
        item = run.item
        run.holder.service.handle(
            StageProgress(item.job_id, item.dispatch_id, str(stage), fraction, time.time())
        )
        job = run.holder.service.get_job(item.job_id)
        if job.status == "processing" and self.row(item.job_id).dispatch_id == item.dispatch_id:
            assert job.progress >= self.last_progress.get(item.job_id, 0.0), "progress went back"
            self.last_progress[item.job_id] = job.progress

    @rule(
        target=ended,
        run=consumes(runs),
        outcome=st.sampled_from(["complete", "fail", "lost", "stopped"]),
    )
    def finish(self, run: Run | None, outcome: str) -> Run | None:
        if run is None or not self.alive(run):
            return None
        item = run.item
        report: Finished | Failed | Lost | Stopped
        if outcome == "complete":
            report = Finished(item.job_id, item.dispatch_id, 600, 400, "png", 10, TIMINGS)
        elif outcome == "fail":
            report = Failed(item.job_id, item.dispatch_id, "not_an_image", "not an image")
        elif outcome == "lost":
            report = Lost(item.job_id, item.dispatch_id, "killed by signal SIGKILL")
        else:
            report = Stopped(item.job_id, item.dispatch_id)
        before = self.row(item.job_id)
        run.holder.service.handle(report)
        after = self.row(item.job_id)
        if before.status == "processing" and before.dispatch_id == item.dispatch_id:
            max_attempts = run.holder.settings.max_attempts
            expected = {
                "complete": ("completed", before.attempt),
                "fail": ("failed", before.attempt),
                "stopped": ("pending", before.attempt),
                "lost": ("pending", before.attempt + 1)
                if before.lost_runs + 1 < max_attempts
                else ("failed", before.attempt),
            }[outcome]
            assert (after.status, after.attempt) == expected
            assert after.dispatch_id is None and after.lease_owner is None
        else:
            assert (after.status, after.attempt) == (before.status, before.attempt), (
                "a stale or late report changed a job"
            )
        return run

    @rule(run=ended)
    def late_report(self, run: Run | None) -> None:
        if run is None:
            return
        item = run.item
        before = self.row(item.job_id)
        for h in self.processes:
            h.service.handle(Finished(item.job_id, item.dispatch_id, 1, 1, "png", 1, TIMINGS))
        after = self.row(item.job_id)
        assert (after.status, after.attempt) == (before.status, before.attempt)

    @precondition(lambda self: self.created)
    @rule(which=PROCESSES, data=st.data())
    def cancel(self, which: int, data: st.DataObject) -> None:
        job_id = self.created[data.draw(st.integers(0, len(self.created) - 1))]
        status = self.row(job_id).status
        try:
            self.processes[which].service.cancel_job(job_id)
            assert status in ("pending", "processing")
        except InvalidTransition:
            assert status in TERMINAL

    @precondition(lambda self: self.created)
    @rule(which=PROCESSES, data=st.data())
    def retry(self, which: int, data: st.DataObject) -> None:
        job_id = self.created[data.draw(st.integers(0, len(self.created) - 1))]
        job = self.processes[which].service.get_job(job_id)
        try:
            new = self.processes[which].service.retry_job(job_id).jobs[0]
            assert job.status in ("failed", "cancelled")
            assert new.retried_from == job_id and new.attempt == job.attempt + 1
            self.created.append(new.id)
        except InvalidTransition:
            pass

    @rule(which=PROCESSES)
    def crash(self, which: int) -> None:
        """The process dies: its runs stay processing, held by a lease nobody renews."""
        self.processes[which] = self.processes[which].reopen()

    @rule(which=PROCESSES)
    def graceful_stop(self, which: int) -> None:
        """A stop: its runs go back to the queue; the Stopped reports its workers send while
        exiting change nothing; a new process takes its place."""
        old = self.processes[which]
        held = old.service._held()
        old.service.release_all()
        for job_id, live in held.items():
            assert self.row(job_id).status in ("pending", *TERMINAL), "a stop left a job running"
            old.service.handle(Stopped(job_id, live.dispatch_id))
            assert self.row(job_id).status != "cancelled" or self.final.get(job_id) == "cancelled"
        self.processes[which] = old.reopen()

    @rule(which=PROCESSES)
    def leases_expire(self, which: int) -> None:
        """Time passes: live processes renew their leases, then one looks for lost runs."""
        clock = self.any.clock
        clock.advance(seconds=self.any.settings.lease_duration.total_seconds() + 1)
        for h in self.processes:
            h.service.renew_leases()
        self.processes[which].service.recover()
        with self.any.service._transactions() as db:
            owners = set(
                db.scalars(select(JobRow.lease_owner).where(JobRow.status == "processing"))
            )
        assert owners <= {h.service.owner for h in self.processes}, "a dead process kept a job"

    @invariant()
    def no_job_is_lost_and_ended_jobs_stay_ended(self) -> None:
        jobs, total = self.any.service.list_jobs(include_superseded=True, limit=10_000)
        assert {j.id for j in jobs} == set(self.created) and total == len(self.created)
        for job in jobs:
            if job.id in self.final:
                assert job.status == self.final[job.id], f"{job.id} left {self.final[job.id]}"
            elif job.status in TERMINAL:
                self.final[job.id] = job.status

    @invariant()
    def a_running_job_has_exactly_one_holder(self) -> None:
        with self.any.service._transactions() as db:
            running = db.execute(
                select(JobRow.id, JobRow.dispatch_id, JobRow.lease_until).where(
                    JobRow.status == "processing"
                )
            ).all()
            idle = db.scalar(
                select(func.count()).where(
                    JobRow.status != "processing", JobRow.dispatch_id.is_not(None)
                )
            )
        assert idle == 0, "a job that is not running still has a dispatch id"
        for job_id, dispatch_id, lease_until in running:
            assert dispatch_id and lease_until is not None
            holders = [
                h
                for h in self.processes
                if (live := h.service._held().get(job_id)) and live.dispatch_id == dispatch_id
            ]
            assert len(holders) <= 1

    @invariant()
    def batch_counts_add_up_and_status_agrees(self) -> None:
        with self.any.service._transactions() as db:
            for batch in db.scalars(select(BatchRow)):
                actual = dict(
                    db.execute(
                        select(JobRow.status, func.count())
                        .where(JobRow.batch_id == batch.id, JobRow.superseded.is_(False))
                        .group_by(JobRow.status)
                    ).all()
                )
                counts = {
                    s: getattr(batch, f"{s}_jobs")
                    for s in ("pending", "processing", "completed", "failed", "cancelled")
                }
                assert counts == {s: actual.get(s, 0) for s in counts}
                assert batch.total_jobs == sum(counts.values())
                assert batch.status == batch_status(total=batch.total_jobs, **counts)


JobServiceMachine.TestCase.settings = settings(
    max_examples=30,  # ~18 s on 2 cores; the suite must stay under 20 minutes
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJobService = JobServiceMachine.TestCase
