"""Two job systems in two OS processes on one fresh PostgreSQL database, as two servers
sharing a database run: both claim from one batch of 120 jobs while the first cancels jobs
that the second is running. The database must keep one truth: every job ends in exactly one
terminal state, counters equal a recount, no job runs twice to completion, and no completion
overwrites a cancel."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import func, select

from bgremover import Settings
from bgremover.jobs.states import TERMINAL, InvalidTransition
from bgremover.jobs.tables import BatchRow, JobRow
from bgremover.system import JobSystem
from bgremover.workers import Failed, Finished, Lost, Report, Stopped
from bgremover.workers.local import LocalProcessExecutor

from .jobs_support import postgres_database, stage_uploads
from .waiting import Polled, until

JOBS = 120
CANCELS = 12
TIMEOUT_S = 300.0


class RecordingExecutor(LocalProcessExecutor):
    """The local pool, keeping every final report its runs sent: (kind, job id, dispatch)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.finals: list[tuple[str, str, str]] = []

    def start(self, sink: Callable[[Report], None]) -> None:
        def record(report: Report) -> None:
            if isinstance(report, Finished | Failed | Stopped | Lost):
                self.finals.append((type(report).__name__, report.job_id, report.dispatch_id))
            sink(report)

        super().start(record)


def run_second_process(
    settings: Settings, started: Any, owner: Any, stop: Any, records: str
) -> None:
    """Process B: a job system of its own on the same database, until told to stop."""
    executor = RecordingExecutor(settings)
    system = JobSystem(settings, executor=executor).start()
    executor.wait_ready(TIMEOUT_S)  # its worker is serving before process A starts
    owner.put(system.service.owner)
    started.set()
    stop.wait()
    system.stop()
    Path(records).write_text(json.dumps(executor.finals))


def test_two_processes_on_one_database_keep_one_truth(tiny_model: Path, tmp_path: Path) -> None:
    png = tmp_path / "small.png"
    Image.new("RGB", (64, 48), (30, 160, 90)).save(png)
    context = multiprocessing.get_context("spawn")
    with postgres_database() as url:
        settings = Settings(
            data_dir=tmp_path / "data",
            cache_dir=tmp_path / "cache",
            database_url=url,
            model_path=tiny_model,
            max_concurrent_jobs=1,
        )
        executor = RecordingExecutor(settings)
        a = JobSystem(settings, executor=executor)
        ids = {j.id for j in a.service.create_batch(stage_uploads(tmp_path, *[png] * JOBS)).jobs}
        started, stop, owner = context.Event(), context.Event(), context.Queue()
        records = tmp_path / "b-finals.json"
        b = context.Process(
            target=run_second_process, args=(settings, started, owner, stop, str(records))
        )
        b.start()
        try:
            assert started.wait(TIMEOUT_S), "process B did not start"
            b_owner = owner.get(timeout=TIMEOUT_S)
            cancelled = drive(a.start(), b_owner, ids)
        finally:
            stop.set()
            b.join(TIMEOUT_S)
            a.stop()
        assert b.exitcode == 0
        b_finals = [tuple(r) for r in json.loads(records.read_text())]

        with a.service._transactions() as db:
            statuses = dict(db.execute(select(JobRow.id, JobRow.status)).all())
            batch = db.scalars(select(BatchRow)).one()
            recount = Counter(statuses.values())
            stored = {s: getattr(batch, f"{s}_jobs") for s in ("completed", "failed", "cancelled")}
        assert set(statuses) == ids and set(statuses.values()) <= TERMINAL
        assert stored == {s: recount.get(s, 0) for s in stored}, "counters drifted"
        assert (batch.total_jobs, batch.pending_jobs, batch.processing_jobs) == (JOBS, 0, 0)
        assert all(statuses[job_id] == "cancelled" for job_id in cancelled), (
            "a completion overwrote a cancel"
        )
        finished = Counter(job for kind, job, _ in executor.finals + b_finals if kind == "Finished")
        assert max(finished.values()) == 1, "a job ran twice to completion"
        completed = {job for job, status in statuses.items() if status == "completed"}
        assert completed <= set(finished)
        assert recount["completed"] + recount["cancelled"] == JOBS
        # Both processes did real work, and the cancels hit runs of the other process.
        assert any(kind == "Finished" for kind, *_ in executor.finals)
        assert any(kind == "Finished" for kind, *_ in b_finals)
        assert len(cancelled) >= 1


def drive(a: JobSystem, b_owner: str, ids: set[str]) -> set[str]:
    """Until every job has ended: cancel (from A) every other job that B is running, up to
    CANCELS, so B also completes some. Returns the jobs whose cancel A's service accepted."""
    cancelled: set[str] = set()
    seen: set[str] = set()

    def ended() -> bool:
        """One look at the database (B's work reaches A only through it): cancel what is
        due; whether every job has ended."""
        with a.service._transactions() as db:
            active = db.scalar(
                select(func.count()).where(
                    JobRow.id.in_(ids), JobRow.status.in_(("pending", "processing"))
                )
            )
            b_running = db.scalars(
                select(JobRow.id).where(
                    JobRow.status == "processing", JobRow.lease_owner == b_owner
                )
            ).all()
        if not active:
            return True
        for job_id in b_running:
            if job_id in seen or len(cancelled) >= CANCELS:
                continue
            seen.add(job_id)
            if len(seen) % 2:
                continue  # this one B may finish
            try:
                a.service.cancel_job(job_id)
                cancelled.add(job_id)
            except InvalidTransition:
                pass  # B finished it first: the database said so
        return False

    until(Polled(ended, every=0.2), timeout=TIMEOUT_S, what="every job ended")
    return cancelled
