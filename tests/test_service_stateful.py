"""A Hypothesis state machine over the job service: random submissions, runs, progress,
completions, failures, worker crashes, cancels, retries, late reports and restarts, checking
after every step that no job is lost, counts add up, ended jobs stay ended, progress never goes
back within a run, and each batch's status agrees with its jobs."""

from __future__ import annotations

import shutil
import tempfile
import time
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
from bgremover.jobs import InvalidTransition
from bgremover.jobs.states import TERMINAL, batch_status
from bgremover.jobs.tables import BatchRow, JobRow
from bgremover.workers.base import Failed, Finished, StageProgress, WorkItem

from .conftest import SAMPLES
from .jobs_support import build_harness

PHOTO = SAMPLES / "coffee.jpg"
TIMINGS = {stage.value: 0.1 for stage in STAGES}


class JobServiceMachine(RuleBasedStateMachine):
    runs = Bundle("runs")
    ended = Bundle("ended")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="bgremover-stateful-"))
        self.h = build_harness(self.root, f"sqlite:///{self.root / 'jobs.sqlite3'}")
        self.created: list[str] = []  # in creation order, so draws replay the same way
        self.final: dict[str, str] = {}  # job id -> the terminal status it reached
        self.last_progress: dict[str, float] = {}
        self.current: dict[str, str] = {}  # job id -> dispatch id of its live run

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(count=st.integers(1, 3), priority=st.integers(0, 2))
    def submit(self, count: int, priority: int) -> None:
        created = self.h.service.create_batch(self.h.uploads(*[PHOTO] * count), priority=priority)
        self.created += [job.id for job in created.jobs]

    @rule(target=runs)
    def start(self) -> WorkItem | None:
        item = self.h.service.claim_next()
        if item is not None:
            self.last_progress[item.job_id] = 0.0
            self.current[item.job_id] = item.dispatch_id
        return item

    @rule(item=runs, stage=st.sampled_from(STAGES), fraction=st.floats(0, 1))
    def progress(self, item: WorkItem | None, stage: object, fraction: float) -> None:
        if item is None:
            return
        self.h.service.handle(
            StageProgress(item.job_id, item.dispatch_id, str(stage), fraction, time.time())
        )
        job = self.h.service.get_job(item.job_id)
        if job.status == "processing":
            assert job.progress >= self.last_progress.get(item.job_id, 0.0), "progress went back"
            self.last_progress[item.job_id] = job.progress

    @rule(target=ended, item=consumes(runs), outcome=st.sampled_from(["complete", "fail", "crash"]))
    def finish(self, item: WorkItem | None, outcome: str) -> WorkItem | None:
        if item is None:
            return None
        if outcome == "complete":
            report: Finished | Failed = Finished(
                item.job_id, item.dispatch_id, 600, 400, "png", 10, TIMINGS
            )
        elif outcome == "fail":
            report = Failed(item.job_id, item.dispatch_id, "not_an_image", "not an image")
        else:
            report = Failed(item.job_id, item.dispatch_id, "worker_crashed", "the worker died")
        before = self.h.service.get_job(item.job_id).status
        self.h.service.handle(report)
        after = self.h.service.get_job(item.job_id).status
        live = self.current.get(item.job_id) == item.dispatch_id
        if before == "processing" and live:
            assert after == ("completed" if outcome == "complete" else "failed")
        else:
            assert after == before, "a stale or late report changed a job"
        return item

    @rule(item=ended)
    def late_report(self, item: WorkItem | None) -> None:
        if item is None:
            return
        before = self.h.service.get_job(item.job_id).status
        self.h.service.handle(Finished(item.job_id, item.dispatch_id, 1, 1, "png", 1, TIMINGS))
        assert self.h.service.get_job(item.job_id).status == before

    @precondition(lambda self: self.created)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = self.created[data.draw(st.integers(0, len(self.created) - 1))]
        status = self.h.service.get_job(job_id).status
        try:
            self.h.service.cancel_job(job_id)
            assert status in ("pending", "processing")
        except InvalidTransition:
            assert status in TERMINAL

    @precondition(lambda self: self.created)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job_id = self.created[data.draw(st.integers(0, len(self.created) - 1))]
        job = self.h.service.get_job(job_id)
        try:
            new = self.h.service.retry_job(job_id).jobs[0]
            assert job.status in ("failed", "cancelled")
            assert new.retried_from == job_id and new.attempt == job.attempt + 1
            self.created.append(new.id)
        except InvalidTransition:
            pass

    @rule()
    def restart(self) -> None:
        self.h = self.h.reopen()
        self.h.service.recover()
        self.last_progress.clear()
        self.current.clear()

    @invariant()
    def no_job_is_lost_and_ended_jobs_stay_ended(self) -> None:
        jobs, total = self.h.service.list_jobs(include_superseded=True, limit=10_000)
        assert {j.id for j in jobs} == set(self.created) and total == len(self.created)
        for job in jobs:
            if job.id in self.final:
                assert job.status == self.final[job.id], f"{job.id} left {self.final[job.id]}"
            elif job.status in TERMINAL:
                self.final[job.id] = job.status

    @invariant()
    def batch_counts_add_up_and_status_agrees(self) -> None:
        with self.h.service._sessions() as db:
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
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJobService = JobServiceMachine.TestCase
