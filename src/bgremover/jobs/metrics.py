"""The job system's numbers for monitoring, kept in the database so every process that shares
it reports the same totals.

Reading them must stay cheap at any size (a scrape every few seconds, under 100 ms with
100,000 jobs), and a total must never go down, not even when retention deletes old jobs
(Prometheus would read that as a restart). So they are not counted from the job rows on each
read: each transaction that starts or ends a run adds its observations to ``metric_counts``
(one row per histogram bucket) just before it commits, and a read is a few hundred rows.
Jobs by status come from the batches' counters, which the state machine keeps exact.

The additions run last in their transaction, in key order: a transaction holding these
shared rows never waits for a job's or a batch's lock, so they add no deadlock on PostgreSQL.
Every ended attempt counts, so a retried image counts once per attempt (as in ``analytics``);
runs that ended before this table existed, or on another server before an import, do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..engine.stages import STAGES
from .analytics import size_label
from .eta import accuracy
from .eta.clock import BUCKET_EDGES_MP
from .states import ACTIVE, STATUSES
from .tables import QUEUE, BatchRow, JobRow, MetricCountRow, QueueRow, StageDurationRow

RUN_EDGES: tuple[float, ...] = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)
"""Seconds from a run's start to its end: a small image takes ~1 s on a GPU, 2.5–7.5 s on two
cores (``eta.clock.FIRST_RUN_SECONDS``)."""
WAIT_EDGES: tuple[float, ...] = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600)
"""Seconds a run waited in the queue: from an idle queue to a long one."""
STAGE_EDGES: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""Seconds per stage: most stages take milliseconds, the AI model seconds."""
ETA_EDGES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)
"""|predicted − actual| / actual of a completed run: 0.1 is 10 % off."""
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "run_seconds": RUN_EDGES,
    "queue_wait_seconds": WAIT_EDGES,
    "stage_seconds": STAGE_EDGES,
    "eta_error_ratio": ETA_EDGES,
}
SIZE_LABELS: tuple[str, ...] = tuple(size_label(b) for b in range(len(BUCKET_EDGES_MP) + 1))
INF = "+Inf"
_NOTED = "bgremover_metrics"
"""``Session.info`` key: the runs this transaction started and ended, recorded at commit."""


@dataclass(frozen=True)
class Buckets:
    """One histogram series: cumulative counts per edge, then the count of all (``+Inf``)."""

    cumulative: tuple[int, ...]
    total: float
    """The sum of the observed values."""

    @property
    def count(self) -> int:
        return self.cumulative[-1]


@dataclass(frozen=True)
class Histogram:
    edges: tuple[float, ...]
    series: dict[str, Buckets]
    """By label (size bucket, stage); "" for a histogram without one."""


@dataclass(frozen=True)
class StoreMetrics:
    jobs: dict[str, int]
    """Jobs by status, every status present; attempts a retry replaced are left out, as in
    the batch counts."""
    completed: int
    """Attempts that completed."""
    failed: dict[str, int]
    """Attempts that failed, by error code ("unknown" when none was given)."""
    run_seconds: Histogram
    """Completed runs, by image size (``SIZE_LABELS``)."""
    queue_wait_seconds: Histogram
    """From a job's (re)queueing to its run's start, by image size."""
    stage_seconds: Histogram
    """Stages of completed runs, by stage, in pipeline order."""
    eta_error: Histogram
    """Completed runs that had an estimate (no label)."""
    webhook_attempts: dict[str, int]
    """Webhook delivery attempts by outcome (``WEBHOOK_OUTCOMES``)."""
    queue_paused: bool
    batches_paused: int
    """Unfinished batches paused on their own (``pauses``)."""


WEBHOOK_OUTCOMES = ("delivered", "retrying", "given_up")
"""What a webhook attempt led to: the receiver took it, it will be tried again, or it was the
last one of its retry period."""


def install(transactions: sessionmaker[Any]) -> None:
    """Record what ``started`` and ``ended`` noted when each transaction of ``transactions``
    commits; forget it when one rolls back."""
    event.listen(transactions, "before_commit", _record)
    event.listen(transactions, "after_rollback", lambda db: db.info.pop(_NOTED, None))


def started(db: Db, job_id: str) -> None:
    """Count the queue wait of the run this transaction starts."""
    db.info.setdefault(_NOTED, ([], []))[0].append(job_id)


def ended(db: Db, job_id: str) -> None:
    """Count the attempt this transaction ends (completed or failed; others are ignored)."""
    db.info.setdefault(_NOTED, ([], []))[1].append(job_id)


def webhook_attempt(db: Db, outcome: str) -> None:
    """Count a webhook attempt in the transaction that records it (call it last there)."""
    _upsert(db, [(("webhook_attempts", outcome, ""), (1, 0.0))])


def _record(db: Db) -> None:
    noted: tuple[list[str], list[str]] | None = db.info.pop(_NOTED, None)
    if not noted:
        return
    added: dict[tuple[str, str, str], tuple[int, float]] = {}

    def add(name: str, label: str, value: float | None = None) -> None:
        key = (name, label, "" if value is None else _bucket(HISTOGRAMS[name], value))
        samples, total = added.get(key, (0, 0.0))
        added[key] = (samples + 1, total + (value or 0.0))

    starts, ends = noted
    if starts:
        for bucket, queued, began in db.execute(
            select(JobRow.size_bucket, JobRow.queued_at, JobRow.start_time).where(
                JobRow.id.in_(starts)
            )
        ):
            if queued is not None and began is not None:
                add("queue_wait_seconds", _size(bucket), _seconds(began - queued))
    if ends:
        _add_ends(db, ends, add)
    if added:
        _upsert(db, sorted(added.items()))


def _add_ends(db: Db, job_ids: Sequence[str], add: Any) -> None:
    completed = []
    for job_id, status, bucket, code, began, end, predicted in db.execute(
        select(
            JobRow.id, JobRow.status, JobRow.size_bucket, JobRow.error_code,
            JobRow.start_time, JobRow.end_time, JobRow.predicted_seconds,
        ).where(JobRow.id.in_(job_ids))
    ):  # fmt: skip
        if status == "failed":
            add("jobs_failed", code or "unknown")
        elif status == "completed":
            completed.append(job_id)
            add("jobs_completed", "")
            if began is not None and end is not None:
                actual = _seconds(end - began)
                add("run_seconds", _size(bucket), actual)
                if predicted is not None and actual > 0:
                    add("eta_error_ratio", "", abs(accuracy.error(predicted, actual)))
    if completed:
        for stage, seconds in db.execute(
            select(StageDurationRow.stage, StageDurationRow.seconds).where(
                StageDurationRow.job_id.in_(completed)
            )
        ):
            add("stage_seconds", stage, seconds)


def _upsert(db: Db, rows: list[tuple[tuple[str, str, str], tuple[int, float]]]) -> None:
    insert = postgresql_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(MetricCountRow).values(
        [
            {"name": name, "label": label, "le": le, "samples": samples, "total": total}
            for (name, label, le), (samples, total) in rows
        ]
    )
    db.execute(
        statement.on_conflict_do_update(
            index_elements=[MetricCountRow.name, MetricCountRow.label, MetricCountRow.le],
            set_={
                "samples": MetricCountRow.samples + statement.excluded.samples,
                "total": MetricCountRow.total + statement.excluded.total,
            },
        )
    )


def _bucket(edges: Sequence[float], value: float) -> str:
    """The ``le`` of the first edge that ``value`` is not above."""
    for edge in edges:
        if value <= edge:
            return f"{edge:g}"
    return INF


def _seconds(delta: Any) -> float:
    return max(0.0, float(delta.total_seconds()))


def _size(bucket: int) -> str:
    return SIZE_LABELS[min(max(int(bucket), 0), len(SIZE_LABELS) - 1)]


def read_metrics(db: Db) -> StoreMetrics:
    """Every number, in four small queries."""
    sums = db.execute(
        select(*(func.coalesce(func.sum(getattr(BatchRow, f"{s}_jobs")), 0) for s in STATUSES))
    ).one()
    queue = db.get(QueueRow, QUEUE)
    batches_paused = db.scalar(
        select(func.count()).where(BatchRow.paused, BatchRow.status.in_(ACTIVE))
    )
    rows = db.execute(
        select(MetricCountRow.name, MetricCountRow.label, MetricCountRow.le,
               MetricCountRow.samples, MetricCountRow.total)
    ).all()  # fmt: skip
    failed: dict[str, int] = {}
    attempts = dict.fromkeys(WEBHOOK_OUTCOMES, 0)
    completed = 0
    found: dict[str, dict[str, dict[str, tuple[int, float]]]] = {}
    for name, label, le, samples, total in rows:
        if name == "jobs_completed":
            completed += int(samples)
        elif name == "jobs_failed":
            failed[label] = failed.get(label, 0) + int(samples)
        elif name == "webhook_attempts":
            attempts[label] = attempts.get(label, 0) + int(samples)
        elif name in HISTOGRAMS:
            found.setdefault(name, {}).setdefault(label, {})[le] = (int(samples), float(total))
    histograms = {
        name: Histogram(edges, {k: _cumulated(edges, b) for k, b in found.get(name, {}).items()})
        for name, edges in HISTOGRAMS.items()
    }
    order = {stage.value: index for index, stage in enumerate(STAGES)}
    stages = histograms["stage_seconds"]
    return StoreMetrics(
        jobs={status: int(count) for status, count in zip(STATUSES, sums, strict=True)},
        completed=completed,
        failed=failed,
        run_seconds=histograms["run_seconds"],
        queue_wait_seconds=histograms["queue_wait_seconds"],
        stage_seconds=Histogram(
            stages.edges,
            dict(sorted(stages.series.items(), key=lambda i: (order.get(i[0], len(order)), i[0]))),
        ),
        eta_error=histograms["eta_error_ratio"],
        webhook_attempts=attempts,
        queue_paused=bool(queue and queue.paused),
        batches_paused=int(batches_paused or 0),
    )


def _cumulated(edges: Sequence[float], buckets: dict[str, tuple[int, float]]) -> Buckets:
    """Cumulative counts over ``edges`` and ``+Inf``; a bucket stored under an edge that is
    no longer one counts in the next edge above it."""
    counts = [0] * (len(edges) + 1)
    total = 0.0
    for le, (samples, value) in buckets.items():
        bound = math.inf if le == INF else float(le)
        index = next((i for i, edge in enumerate(edges) if bound <= edge), len(edges))
        counts[index] += samples
        total += value
    running, cumulative = 0, []
    for count in counts:
        running += count
        cumulative.append(running)
    return Buckets(tuple(cumulative), total)
