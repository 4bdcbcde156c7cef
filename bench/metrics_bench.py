"""What ``GET /metrics`` costs on a big database (the goal: under 100 ms with 100,000 jobs).

Fills a fresh SQLite file (and, with ``--postgres``, a private PostgreSQL database, dropped
afterwards) with ``--jobs`` jobs as a week of real use leaves them: batches of 1–40 images in
sessions of up to 10 batches, about 85 % completed (with six stage durations each and the
run's estimate), 6 % failed under the error codes the engine gives, 3 % cancelled, the rest
pending or processing; all four image-size buckets, some retried attempts. Rows go in with
bulk inserts, not through the service. Then it times ``--scrapes`` requests to ``/metrics``
through the real ASGI app (a job system whose executor takes no work, so nothing changes
under the scrapes) and prints the median and the slowest, and the database part alone.

    .venv/bin/python bench/metrics_bench.py [--jobs 100000] [--scrapes 30] [--postgres]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from bgremover.config import Settings
from bgremover.engine.stages import STAGE_WEIGHTS
from bgremover.jobs import metrics
from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.tables import BatchRow, JobRow, SessionRow, StageDurationRow
from bgremover.system import JobSystem
from bgremover.web import create_app
from bgremover.workers.base import Executor, ReportSink, WorkItem
from common import postgres_database  # bench/ is on sys.path when run as a script
from report import note, row, section

GOAL_MS = 100.0
CHUNK = 5000
FAILURES = {"corrupt_image": 5, "not_an_image": 3, "image_too_large": 1, "worker_lost": 1}
SECONDS_PER_MP = (2.5, 4.0, 9.0, 20.0)
"""A run's typical seconds per size bucket (two cores, ``eta.FIRST_RUN_SECONDS``-like)."""


class IdleExecutor(Executor):
    """Takes no work: the scheduler never changes a row while the scrapes are timed."""

    def start(self, sink: ReportSink) -> None:
        pass

    def free_slots(self) -> int:
        return 0

    def submit(self, item: WorkItem) -> None:
        raise AssertionError("the idle executor takes no work")

    def cancel(self, job_id: str) -> None:
        pass

    def shutdown(self) -> None:
        pass


def rows(jobs: int, seed: int = 22) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Chunks of new rows by table ("sessions", "batches", "jobs", "stages")."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=7)
    made, order = 0, 0
    sessions: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    job_rows: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    moment = start
    while made < jobs:
        session_id = uuid.uuid4().hex
        sessions.append(
            {"id": session_id, "name": f"Session {len(sessions)}", "started_at": moment,
             "last_activity_at": moment}
        )  # fmt: skip
        for _ in range(rng.randint(1, 10)):
            if made >= jobs:
                break
            size = min(rng.randint(1, 40), jobs - made)
            batch_id = uuid.uuid4().hex
            batches.append(
                {"id": batch_id, "session_id": session_id, "name": f"Batch {len(batches)}",
                 "manual": False, "status": "completed", "created_at": moment,
                 "total_jobs": size, "completed_jobs": size}
            )  # fmt: skip
            for _ in range(size):
                order += 1
                job, timings = _job(rng, batch_id, order, moment)
                job_rows.append(job)
                stages.extend({"job_id": job["id"], "stage": s, "seconds": t} for s, t in timings)
                made += 1
            moment += timedelta(seconds=rng.uniform(1, 12))
        if len(job_rows) >= CHUNK:
            yield from _flush(sessions, batches, job_rows, stages)
    yield from _flush(sessions, batches, job_rows, stages)


def _flush(*tables: list[dict[str, Any]]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    if any(tables):
        yield dict(zip(("sessions", "batches", "jobs", "stages"), map(list, tables), strict=True))
    for table in tables:
        table.clear()


def _job(
    rng: random.Random, batch_id: str, order: int, created: datetime
) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    bucket = rng.choices(range(4), weights=(50, 30, 15, 5))[0]
    roll = rng.random()
    status = (
        "completed" if roll < 0.85 else "failed" if roll < 0.91 else
        "cancelled" if roll < 0.94 else "processing" if roll < 0.942 else "pending"
    )  # fmt: skip
    job: dict[str, Any] = {
        "id": uuid.uuid4().hex, "batch_id": batch_id, "file_name": f"IMG_{order:06d}.jpg",
        "file_size": rng.randint(50_000, 12_000_000), "content_hash": uuid.uuid4().hex * 2,
        "media_type": "image/jpeg", "status": status, "progress": 0.0, "priority": 0,
        "queue_order": order, "attempt": 1, "superseded": rng.random() < 0.01,
        "options": {}, "created_at": created, "queued_at": created, "lost_runs": 0,
        "size_bucket": bucket, "stage": None, "start_time": None, "end_time": None,
        "predicted_seconds": None, "error_code": None, "error_message": None,
    }  # fmt: skip
    timings: list[tuple[str, float]] = []
    if status in ("pending", "cancelled") and rng.random() < 0.7:
        return job, timings
    began = created + timedelta(seconds=rng.expovariate(1 / 20))
    seconds = SECONDS_PER_MP[bucket] * rng.lognormvariate(0, 0.3)
    job["start_time"] = began
    if status == "processing":
        job["stage"] = "AI model"
        return job, timings
    job["end_time"] = began + timedelta(seconds=seconds)
    if status == "completed":
        job["predicted_seconds"] = seconds * rng.lognormvariate(0, 0.25)
        job["progress"] = 100.0
        timings = [(str(s), seconds * w * rng.uniform(0.8, 1.2)) for s, w in STAGE_WEIGHTS.items()]
    elif status == "failed":
        code = rng.choices(list(FAILURES), weights=list(FAILURES.values()))[0]
        job.update(error_code=code, error_message=f"IMG_{order:06d}.jpg: {code}")
    return job, timings


def fill(engine: Engine, jobs: int) -> float:
    """Seconds it took to insert ``jobs`` jobs and their batches, sessions and stages, and
    to count their runs as the service does when they start and end (``metrics``)."""
    migrate(engine)
    tables = {"sessions": SessionRow, "batches": BatchRow, "jobs": JobRow,
              "stages": StageDurationRow}  # fmt: skip
    sessions = session_factory(engine)
    began = time.perf_counter()
    for chunk in rows(jobs):
        with sessions.begin() as db:
            for name, table in tables.items():
                if chunk[name]:
                    db.execute(insert(table), chunk[name])
            for job in chunk["jobs"]:
                if job["start_time"] is not None:
                    metrics.started(db, job["id"])
                if job["status"] in ("completed", "failed"):
                    metrics.ended(db, job["id"])
    return time.perf_counter() - began


def time_scrapes(settings: Settings, scrapes: int) -> tuple[list[float], list[float], int]:
    """Milliseconds per ``/metrics`` request and per database read, and the body size."""
    system = JobSystem(settings, executor=IdleExecutor())
    try:
        app = create_app(settings, system=system)
        with TestClient(app, base_url="http://localhost") as client:
            body = client.get("/metrics")
            body.raise_for_status()
            requests, reads = [], []
            for _ in range(scrapes):
                began = time.perf_counter()
                client.get("/metrics").raise_for_status()
                requests.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                system.service.metrics()
                reads.append((time.perf_counter() - began) * 1000)
        return requests, reads, len(body.content)
    finally:
        system.service.close()


def report(label: str, settings: Settings, jobs: int, scrapes: int) -> None:
    section(f"/metrics on {label}, {jobs:,} jobs")
    engine = connect(settings.database_url or "")
    try:
        row("fill (bulk inserts)", f"{fill(engine, jobs):.1f} s")
    finally:
        engine.dispose()
    requests, reads, size = time_scrapes(settings, scrapes)
    row(f"GET /metrics, median of {scrapes}", f"{statistics.median(requests):.1f} ms")
    row(f"GET /metrics, slowest of {scrapes}", f"{max(requests):.1f} ms")
    row("database read alone, median", f"{statistics.median(reads):.1f} ms")
    row("body", f"{size:,} bytes")
    verdict = "meets" if max(requests) < GOAL_MS else "MISSES"
    note(f"{verdict} the goal: every scrape under {GOAL_MS:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'jobs.sqlite3'}"
        report("SQLite", Settings(data_dir=root / "a", database_url=url), args.jobs, args.scrapes)
        if args.postgres:
            with postgres_database("bgremover_metrics_bench") as url:
                settings = Settings(data_dir=root / "b", database_url=url)
                report("PostgreSQL", settings, args.jobs, args.scrapes)


if __name__ == "__main__":
    main()
