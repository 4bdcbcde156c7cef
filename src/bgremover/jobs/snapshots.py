"""Rows to public snapshots, merging live (in-memory) progress and ETAs.

A batch's and a session's ``progress`` is the share of their expected wall time elapsed
(``time_share``), not of the work done: the queue and the workers' warm-up are time the user
waits as much as the model's, so the bar moves while they pass. Work done (each job priced
by its size) is its floor. Every process computes it from the database and the ETA, so every
client (the UI, ``GET /api/batches``, scripts on the event stream) gets the same percent; the
UI only draws it on between events, along the same line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..engine.stages import Stage, parse_label, stage_label
from . import clip_progress
from .clip_progress import ClipRun
from .eta.clock import BUCKET_EDGES_MP, StageClock, size_bucket
from .schemas import Batch, Counts, Job, JobError, ResultInfo, Session
from .states import ACTIVE, STATUSES, TERMINAL, JobStatus, batch_status
from .tables import BatchRow, JobRow, SessionRow, weight


@dataclass
class Live:
    """What the service knows of a running job between database writes."""

    dispatch_id: str
    batch_id: str
    bucket: int
    stage: Stage | None = None
    fraction: float = 0.0
    percent: float = 0.0
    pixels: int | None = None
    mask_reused: bool = False
    """Whether the run reuses a kept mask (expected at its claim, or said by its stage)."""
    model: str | None = None
    """The model the job chose (None: the default), whose learned time its ETA uses."""
    clip: ClipRun | None = None
    """A clip's frames and measured pace, while one runs (``clip_progress``)."""
    frames: int = 1
    """Its weight in its batch's counters (``tables.weight``): a clip's frames, else 1."""

    @property
    def label(self) -> str | None:
        """Its stage as people see it ("AI model: reused")."""
        if self.clip is not None:
            return self.clip.label
        return stage_label(self.stage, self.mask_reused) if self.stage else None

    @classmethod
    def claimed(cls, row: JobRow, dispatch_id: str, *, mask_reused: bool = False) -> Live:
        """The run of ``row`` this process starts holding (by its claim or a take-over),
        before any stage is reported."""
        pixels = row.width * row.height if row.width and row.height else None
        return cls(
            dispatch_id,
            row.batch_id,
            row.size_bucket,
            pixels=pixels,
            mask_reused=mask_reused,
            model=model_of(row.options),
            frames=weight(row.frames),
        )

    @classmethod
    def from_row(
        cls,
        dispatch_id: str,
        batch_id: str,
        width: int | None,
        height: int | None,
        stage: str | None,
        progress: float,
        model: str | None = None,
        frames: int | None = None,
    ) -> Live:
        """A run held by another process, as far as the database knows it: its last stage,
        taken as just begun."""
        try:
            current, reused = parse_label(stage) if stage else (None, False)
        except ValueError:
            current, reused = None, False
        pixels = width * height if width and height else None
        bucket = size_bucket(width, height)
        clip = clip_progress.from_label(stage)
        return cls(
            dispatch_id,
            batch_id,
            bucket,
            current,
            0.0,
            progress,
            pixels,
            reused,
            model,
            clip,
            weight(frames),
        )


def chosen_model(row: JobRow) -> str | None:
    """The model a job's options name; None: the server's default."""
    return model_of(row.options)


def model_of(options: dict[str, Any] | None) -> str | None:
    model = (options or {}).get("model")
    return model if isinstance(model, str) else None


def live_remaining(live: Live, clock: StageClock) -> float:
    """Seconds a running job has left from its last reported stage and fraction."""
    if live.clip is not None:
        return live.clip.remaining(clock.job_seconds(live.bucket, live.pixels, live.model))
    reused = live.mask_reused
    if live.stage is None:
        return live.frames * clock.job_seconds(
            live.bucket, live.pixels, live.model, mask_reused=reused
        )
    return clock.remaining(
        live.bucket, live.stage, live.fraction, live.pixels, live.model, mask_reused=reused
    )


def job_eta(
    row: JobRow, live: Live | None, clock: StageClock, mask_kept: bool = False
) -> float | None:
    if row.status == "processing" and live is not None:
        return live_remaining(live, clock)
    if row.status == "processing":  # run by another process: from its last stage written
        other = Live.from_row(
            "",
            row.batch_id,
            row.width,
            row.height,
            row.stage,
            row.progress,
            chosen_model(row),
            row.frames,
        )
        return live_remaining(other, clock)
    if row.status == "pending":
        return expected_seconds(row, clock, mask_kept)
    return None


def expected_seconds(row: JobRow, clock: StageClock, mask_kept: bool = False) -> float:
    """What a run of the job is expected to take: a clip its frames times a still image of
    its size (what one frame costs before its run measures its own pace)."""
    pixels = _pixels(row.width, row.height)
    seconds = clock.job_seconds(row.size_bucket, pixels, chosen_model(row), mask_reused=mask_kept)
    return weight(row.frames) * seconds


def work(row: BatchRow, running: list[Live], clock: StageClock) -> tuple[float, float]:
    """Seconds of work the batch's jobs are expected to take in all, and how much of it is
    done: ended jobs whole, running ones by their percent, each job priced by its size and
    a clip by its frames."""
    seconds = [clock.job_seconds(bucket) for bucket in range(len(BUCKET_EDGES_MP) + 1)]
    total = sum(n * s for n, s in zip(row.by_bucket("total"), seconds, strict=True))
    done = sum(n * s for n, s in zip(row.by_bucket("ended"), seconds, strict=True))
    done += sum(live.percent / 100 * live.frames * seconds[live.bucket] for live in running)
    return done, total


def waits_paused(row: BatchRow, queue_paused: bool) -> bool:
    """Whether the batch has jobs that wait on a pause (its own or the queue's): then no
    time is right for it, so its ETA is None with the reason "paused" instead of a countdown
    toward a time that will not come. Running jobs still finish, so a paused batch with
    nothing pending keeps its ETA."""
    return (queue_paused or row.paused) and row.pending_jobs > 0


def job_snapshot(
    row: JobRow,
    session_id: str,
    live: Live | None,
    clock: StageClock,
    now: datetime,
    *,
    paused: bool = False,
    mask_kept: bool = False,
) -> Job:
    """The job as clients see it; ``mask_kept``: a pending job's mask is kept, so its run
    will skip the model (a short estimate)."""
    error = (
        JobError(code=row.error_code, message=row.error_message or row.error_code)
        if row.error_code
        else None
    )
    result = (
        ResultInfo(
            width=row.result_width or 0,
            height=row.result_height or 0,
            format=row.result_format or "png",
            bytes=row.result_bytes or 0,
            model=row.result_model,
            model_sha256=row.result_model_sha256,
        )
        if row.status == "completed" and row.result_path
        else None
    )
    held = paused and row.status == "pending"
    progress, stage = row.progress, row.stage
    if live is not None and row.status == "processing":
        progress = max(progress, live.percent)
        stage = live.label or stage
    return Job(
        id=row.id,
        batch_id=row.batch_id,
        session_id=session_id,
        file_name=row.file_name,
        file_size=row.file_size,
        media_type=row.media_type,
        width=row.width,
        height=row.height,
        status=row.status,  # type: ignore[arg-type]
        stage=stage,
        progress=round(progress, 2),
        priority=row.priority,
        attempt=row.attempt,
        retried_from=row.retried_from,
        superseded=bool(row.superseded),
        options=row.options or {},
        created_at=row.created_at,
        queued_at=row.queued_at,
        start_time=row.start_time,
        end_time=row.end_time,
        estimated_time_remaining=_round(
            eta := None if held else job_eta(row, live, clock, mask_kept)
        ),
        eta_at=now if eta is not None else None,
        eta_reason="paused" if held else None,
        error=error,
        worker=row.worker,
        result=result,
    )


def counts_of(row: BatchRow) -> Counts:
    return Counts(
        total=row.total_jobs,
        pending=row.pending_jobs,
        processing=row.processing_jobs,
        completed=row.completed_jobs,
        failed=row.failed_jobs,
        cancelled=row.cancelled_jobs,
    )


ACTIVE_CAP = 99.0
"""An active batch or session shows at most this: 100 % is for its end (the UI's cap too)."""


def time_share(since: datetime | None, eta: float | None, now: datetime) -> float:
    """Percent of an item's expected wall time elapsed: the time since its clock started
    over that plus the time its ETA says is left. While the ETA is right this is the share
    of the wall time, and counting the ETA down from ``now`` draws the same straight line
    toward 100 % that the UI draws between events."""
    if since is None or eta is None:
        return 0.0
    elapsed = max(0.0, (now - since).total_seconds())
    return 100.0 * elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0


def warming_eta(eta: float, since: datetime | None, now: datetime, warm_up: float) -> float:
    """The ETA of a batch that waits for workers whose speed is not known yet (a fresh
    server warming up): ``eta`` is the work at the default speed, so add the warm-up left at
    that speed, and once the warm-up has run longer, assume the work will be as much slower
    as it was. Elapsed time counts from ``since``, the batch's upload, as the warm-up's."""
    elapsed = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
    if elapsed <= warm_up:
        return eta + warm_up - elapsed
    return eta * elapsed / warm_up


def shown_percent(done: float, total: float, active: bool, share: float) -> float:
    """The percent to show: an active item's time share with its work done as the floor,
    below 100 %; an ended one's work (100 %)."""
    work_percent = _percent(done, total)
    if not active or total <= 0:
        return work_percent
    return round(min(ACTIVE_CAP, max(work_percent, share)), 2)


def batch_snapshot(
    row: BatchRow,
    running: list[Live],
    eta: float | None,
    now: datetime,
    clock: StageClock,
    *,
    queue_paused: bool = False,
) -> Batch:
    held = waits_paused(row, queue_paused)
    eta = None if held else eta
    counts = counts_of(row)
    done, total = work(row, running, clock)
    active = row.status not in TERMINAL
    return Batch(
        id=row.id,
        name=row.name,
        session_id=row.session_id,
        manual=row.manual,
        status=row.status,  # type: ignore[arg-type]
        progress=shown_percent(done, total, active, time_share(row.active_since, eta, now)),
        counts=counts,
        created_at=row.created_at,
        start_time=row.start_time,
        end_time=row.end_time,
        duration=_duration(row.start_time, row.end_time, now),
        estimated_time_remaining=_round(eta),
        eta_at=now if eta is not None else None,
        eta_reason="paused" if held else None,
        paused=bool(row.paused),
        work_seconds=round(total, 2),
        work_done_seconds=round(done, 2),
    )


def session_snapshot(
    row: SessionRow,
    batches: list[Batch],
    eta: float | None,
    now: datetime,
    since: datetime | None,
) -> Session:
    """``since``: where the clock of its earliest active batch starts. Ended batches count
    whole and active ones by their shared time share, each by its work, so a session of
    one batch shows exactly its batch's percent. Its ETA waits on a pause when any of its
    batches' does."""
    held = any(b.eta_reason == "paused" for b in batches)
    eta = None if held else eta
    fields = ("total", *STATUSES)
    counts = Counts(**{f: sum(getattr(b.counts, f) for b in batches) for f in fields})
    status: JobStatus = batch_status(**counts.model_dump())
    starts = [b.start_time for b in batches if b.start_time]
    ends = [b.end_time for b in batches if b.end_time]
    finished = status not in ACTIVE
    done = sum(b.work_done_seconds for b in batches)
    total = sum(b.work_seconds for b in batches)
    ended = sum(b.work_seconds for b in batches if b.status in TERMINAL)
    share = (100 * ended + (total - ended) * time_share(since, eta, now)) / total if total else 0
    return Session(
        id=row.id,
        name=row.name,
        started_at=row.started_at,
        last_activity_at=row.last_activity_at,
        status=status,
        progress=shown_percent(done, total, not finished, share),
        counts=counts,
        batch_ids=[b.id for b in batches],
        duration=_duration(
            min(starts) if starts else None, max(ends) if finished and ends else None, now
        ),
        estimated_time_remaining=_round(eta),
        eta_at=now if eta is not None else None,
        eta_reason="paused" if held else None,
    )


def _percent(done: float, total: float) -> float:
    return round(min(100.0, 100.0 * done / total), 2) if total > 0 else 0.0


def _duration(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    if start is None:
        return None
    return round(((end or now) - start).total_seconds(), 3)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _pixels(width: int | None, height: int | None) -> int | None:
    return width * height if width and height else None
