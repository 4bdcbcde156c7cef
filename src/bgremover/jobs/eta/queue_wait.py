"""Queue-wait estimates: when the last job of some batches should finish, from what the
running jobs have left and the work queued ahead, shared by the concurrent slots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session as Db

from ..snapshots import Live, live_remaining, warming_eta
from ..states import ACTIVE
from ..tables import BatchRow, JobRow
from .clock import BUCKET_EDGES_MP, WARM_UP_SECONDS, StageClock

AHEAD_CAP = 200
"""Counting the queue ahead of a batch walks at most this many index entries from either end
of the queue before it counts exactly (a batch in the middle of a huge queue)."""


def warming(
    eta: float | None,
    since: datetime | None,
    running: list[Live],
    clock: StageClock,
    now: datetime,
) -> float | None:
    """``eta`` of jobs that have not started, with the workers' warm-up in it while
    nothing runs and nothing has timed this machine yet (a fresh server: its workers
    take a job only once warm). Without it the time share of a fresh server's first
    batch would run far ahead during the warm-up and hold there."""
    if eta is None or running or clock.measured:
        return eta
    return warming_eta(eta, since, now, WARM_UP_SECONDS)


def queue_eta(
    db: Db,
    batches: list[BatchRow],
    own: list[Live],
    running: list[Live],
    clock: StageClock,
    slots: int,
    clip_chunk: Callable[[int], int] | None = None,
) -> float | None:
    """Seconds until the last job of these batches should finish: what the running jobs
    have left and the work queued up to and including that job, shared by the concurrent
    slots. Their own jobs are priced by their sizes (a clip by its frames); others ahead at
    the queue's mean.

    A clip of n frames is shared out only in chunks of ``clip_chunk(n)`` frames (the
    cluster's), or not at all (None: one slot runs all its frames). So the work is spread
    as a queue spreads it at worst (Graham's bound for list scheduling): everything but the
    longest unshared part over the slots, then that part alone. A batch that is mostly one
    clip is then not promised its frames at the pace of every slot."""
    own_pending = _pending_by_bucket(batches, own)
    if not any(own_pending) and not own:
        return None
    seconds = [clock.job_seconds(bucket) for bucket in range(len(BUCKET_EDGES_MP) + 1)]
    running_left = sum(live_remaining(live, clock) for live in running)
    queued = longest = 0.0
    if any(own_pending):
        ahead = pending_ahead(db, [b.id for b in batches if b.pending_jobs])
        others = max(0, ahead - sum(b.pending_jobs for b in batches))
        queued = sum(n * s for n, s in zip(own_pending, seconds, strict=True))
        queued += others * _mean_pending_seconds(db, running, seconds)
        if sum(own_pending) > sum(b.pending_jobs for b in batches):  # a clip is among them
            longest = _longest_pending_clip(db, batches, seconds, clip_chunk)
    slots = max(1, slots)
    own_left = max((live_remaining(live, clock) for live in own), default=0.0)
    return max(own_left, (running_left + queued - longest) / slots + longest)


def _longest_pending_clip(
    db: Db, batches: Sequence[BatchRow], seconds: list[float], chunk: Callable[[int], int] | None
) -> float:
    """The expected time of the longest clip not yet started in these batches, or of one
    of its chunks when clips are shared out in chunks (``chunk(frames)`` frames each)."""
    longest = db.execute(
        select(JobRow.size_bucket, func.max(JobRow.frames))
        .where(
            JobRow.batch_id.in_([b.id for b in batches]),
            JobRow.status == "pending",
            JobRow.frames > 1,
        )
        .group_by(JobRow.size_bucket)
    ).all()

    def unshared(frames: int) -> int:
        """The frames of a clip one slot runs: a chunk of it, or all of it."""
        return min(frames, chunk(frames)) if chunk else frames

    return max((unshared(frames or 1) * seconds[b] for b, frames in longest), default=0.0)


def _pending_by_bucket(batches: Sequence[BatchRow], running: list[Live]) -> list[int]:
    """Frames (a photo's one, a clip's all) per size bucket not yet started in these
    batches."""
    counts = [0] * (len(BUCKET_EDGES_MP) + 1)
    for batch in batches:
        for bucket, (total, ended) in enumerate(
            zip(batch.by_bucket("total"), batch.by_bucket("ended"), strict=True)
        ):
            counts[bucket] += total - ended
    for live in running:
        counts[live.bucket] -= live.frames
    return [max(0, n) for n in counts]


def _mean_pending_seconds(db: Db, running: list[Live], seconds: list[float]) -> float:
    """The expected time of a pending job anywhere in the queue (by the sizes and frames
    queued)."""
    active = db.scalars(select(BatchRow).where(BatchRow.status.in_(ACTIVE))).all()
    pending = _pending_by_bucket(active, running)
    count = sum(b.pending_jobs for b in active)
    if not count:
        return seconds[0]
    return sum(n * s for n, s in zip(pending, seconds, strict=True)) / count


def pending_ahead(db: Db, batch_ids: list[str]) -> int:
    """Pending jobs that run before these batches' last pending job, itself included.

    Counted from whichever end of the queue is nearer, so a batch at the back or the
    front of 100,000 pending jobs costs a bounded index walk; a big batch deep in the
    queue is the jobs before its first one plus its own."""
    last = _edge(db, batch_ids, last=True)
    if last is None:
        return 0
    priority, order = last
    pending, same = JobRow.status == "pending", JobRow.priority == priority
    # Each part is one range of the claim index, so a capped count stops early.
    behind = [
        and_(pending, JobRow.priority < priority),
        and_(pending, same, JobRow.queue_order > order),
    ]
    ahead = [
        and_(pending, JobRow.priority > priority),
        and_(pending, same, JobRow.queue_order <= order),
    ]
    # A new batch is usually at the back of the queue, a reprioritised one at the front.
    back = sum(_count(db, part, AHEAD_CAP) for part in behind)
    if back < AHEAD_CAP:
        total = db.scalar(
            select(func.coalesce(func.sum(BatchRow.pending_jobs), 0)).where(
                BatchRow.status.in_(ACTIVE)
            )
        )
        return int(total or 0) - back
    front = sum(_count(db, part, AHEAD_CAP) for part in ahead)
    if front < AHEAD_CAP:
        return front
    first = _edge(db, batch_ids, last=False)
    assert first is not None
    first_priority, first_order = first
    before = [
        and_(pending, JobRow.priority > first_priority),
        and_(pending, JobRow.priority == first_priority, JobRow.queue_order < first_order),
    ]
    ahead_of_first = sum(_count(db, part, AHEAD_CAP) for part in before)
    if ahead_of_first < AHEAD_CAP:
        # Exact unless other jobs are interleaved with the batch's (a reprioritised one).
        own = db.scalar(
            select(func.coalesce(func.sum(BatchRow.pending_jobs), 0)).where(
                BatchRow.id.in_(batch_ids)
            )
        )
        return ahead_of_first + int(own or 0)
    return sum(_count(db, part, None) for part in ahead)


def _count(db: Db, where: ColumnElement[bool], cap: int | None) -> int:
    """Jobs meeting ``where``, counting at most ``cap`` of them."""
    query = select(JobRow.id).where(where)
    inner = query.limit(cap) if cap is not None else query
    return int(db.scalar(select(func.count()).select_from(inner.subquery())) or 0)


def _edge(db: Db, batch_ids: list[str], *, last: bool) -> tuple[int, int] | None:
    """(priority, queue_order) of the pending job of these batches that runs last (or
    first): one index lookup per batch, so a session of many batches in a long queue does
    not sort the whole queue."""
    order = (
        (JobRow.priority, JobRow.queue_order.desc())
        if last
        else (JobRow.priority.desc(), JobRow.queue_order)
    )
    edges = []
    for batch_id in batch_ids:
        edge = db.execute(
            select(JobRow.priority, JobRow.queue_order)
            .where(JobRow.batch_id == batch_id, JobRow.status == "pending")
            .order_by(*order)
            .limit(1)
        ).first()
        if edge is not None:
            edges.append((int(edge[0]), int(edge[1])))
    if not edges:
        return None
    if last:
        return min(edges, key=lambda e: (e[0], -e[1]))
    return max(edges, key=lambda e: (e[0], -e[1]))
