"""What the job system did in a window of time, for people who would rather look than read:
images per hour, failures by reason, how long each stage and each image size took, how long
jobs waited in the queue, and how far the ETAs were off.

Everything is aggregated in the database (``sqlstats``), the same on SQLite and PostgreSQL;
Python only fills in the hours nothing ended in. Every ended attempt counts, so a retried image
counts once per attempt: the failures before the retry really happened.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session as Db

from ..engine.stages import STAGES
from .eta import accuracy
from .eta.clock import BUCKET_EDGES_MP
from .sqlstats import HOUR, epoch_hour, epoch_seconds, spreads
from .states import TERMINAL
from .tables import JobRow, StageDurationRow
from .times import InvalidTime, parse_time

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=90)
"""At most this far back: 2,160 hourly buckets (finished jobs are kept 7 days by default)."""
ETA_POINTS = 500
"""The most recent completed jobs whose estimate and duration are returned one by one."""

_SPAN = re.compile(r"(\d{1,6})\s*([mhdw])", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = TypeAdapter(timedelta)
_FORMS = (
    "give a time (2026-11-29T08:00:00Z) or how far back from now: 90m, 24h, 7d, 2w or "
    "ISO 8601 (PT6H, P7D)"
)


class InvalidWindow(InvalidTime):
    """A ``since`` that is not a time or span we read, in the future, or too far back."""


class _Shape(BaseModel):
    model_config = ConfigDict(frozen=True)


class Totals(_Shape):
    """Jobs that ended, by how."""

    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class HourCounts(Totals):
    hour: datetime
    """Start of the hour (UTC)."""


class FailureReason(_Shape):
    code: str
    count: int
    message: str
    """The latest failure's message with this code."""


class Spread(_Shape):
    """Seconds: how many samples, their median and 90th percentile (None without samples)."""

    jobs: int = 0
    median: float | None = None
    p90: float | None = None


class StageSpread(Spread):
    stage: str


class SizeSpread(Spread):
    bucket: int
    label: str
    """The bucket's megapixels, as people read them: "1–4 MP"."""


class HourSpread(Spread):
    hour: datetime


class QueueWait(_Shape):
    """From upload (``created_at``) to the start of the job's latest run."""

    overall: Spread
    hours: list[HourSpread]
    """By the hour the jobs started; hours no job started in are left out."""


class EtaPoint(_Shape):
    end_time: datetime
    predicted: float
    """Seconds the run was expected to take when it started."""
    actual: float


class EtaErrors(_Shape):
    """The estimate made when each completed run started against how long it took."""

    jobs: int = 0
    median_error: float | None = None
    """Median of |predicted − actual| / actual: 0.1 means typically 10 % off."""
    p90_error: float | None = None
    mean_bias: float | None = None
    """Mean of (predicted − actual) / actual: negative when the estimates run short."""
    points: list[EtaPoint] = []
    """The most recent (at most ``ETA_POINTS``), oldest first."""


class Analytics(_Shape):
    since: datetime
    until: datetime
    totals: Totals
    hours: list[HourCounts]
    """Every hour of the window, oldest first, by when the jobs ended."""
    failures: list[FailureReason]
    """Most frequent first."""
    stages: list[StageSpread]
    """Per stage of the completed runs, in pipeline order."""
    sizes: list[SizeSpread]
    """A completed run's duration (start to end) per image-size bucket."""
    queue_wait: QueueWait
    eta: EtaErrors


def window_start(since: str | None, now: datetime) -> datetime:
    """The window's start for a ``since`` query value: an ISO 8601 time (UTC when it names
    no zone) or a span back from ``now``; the last 24 hours when it is empty."""
    text = (since or "").strip()
    if not text:
        return now - DEFAULT_WINDOW
    # Compared as spans before subtracting: "999999w" back from now is before year 1.
    if match := _SPAN.fullmatch(text):
        span = timedelta(**{_UNITS[match[2].lower()]: int(match[1])})
    elif text[0] in "Pp":
        try:
            span = _DURATION.validate_python(text.upper())
        except ValidationError:
            raise InvalidWindow(f"since={text!r} is not an ISO 8601 duration; {_FORMS}") from None
    else:
        span = now - _time(text)
    if span <= timedelta(0):
        raise InvalidWindow(f"since={text!r} is not in the past; {_FORMS}")
    if span > MAX_WINDOW:
        raise InvalidWindow(
            f"since={text!r} is more than {MAX_WINDOW.days} days ago; ask for a shorter window"
        )
    return now - span


def _time(text: str) -> datetime:
    try:
        return parse_time("since", text, _FORMS)
    except InvalidTime as exc:
        raise InvalidWindow(*exc.args) from None


def report(db: Db, since: datetime, until: datetime) -> Analytics:
    """Every aggregate of the window [``since``, ``until``]."""
    hours = _hours(db, since, until)
    return Analytics(
        since=since,
        until=until,
        totals=Totals(
            completed=sum(h.completed for h in hours),
            failed=sum(h.failed for h in hours),
            cancelled=sum(h.cancelled for h in hours),
        ),
        hours=hours,
        failures=_failures(db, since, until),
        stages=_stages(db, since, until),
        sizes=_sizes(db, since, until),
        queue_wait=_queue_wait(db, since, until),
        eta=_eta(db, since, until),
    )


def _ended(since: datetime, until: datetime) -> ColumnElement[bool]:
    return JobRow.end_time.between(since, until)


def _completed(since: datetime, until: datetime) -> tuple[ColumnElement[bool], ...]:
    return JobRow.status == "completed", JobRow.start_time.is_not(None), _ended(since, until)


def _run_seconds() -> ColumnElement[float]:
    return epoch_seconds(JobRow.end_time) - epoch_seconds(JobRow.start_time)


def _hour_of(index: int) -> datetime:
    return datetime.fromtimestamp(index * HOUR, UTC)


def _hour_index(moment: datetime) -> int:
    return int(moment.timestamp()) // HOUR


def _hours(db: Db, since: datetime, until: datetime) -> list[HourCounts]:
    hour = epoch_hour(JobRow.end_time)
    rows = db.execute(
        select(hour, JobRow.status, func.count())
        .where(JobRow.status.in_(TERMINAL), _ended(since, until))
        .group_by(hour, JobRow.status)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for index, status, count in rows:
        counts.setdefault(int(index), {})[str(status)] = int(count)
    return [
        HourCounts(hour=_hour_of(index), **counts.get(index, {}))
        for index in range(_hour_index(since), _hour_index(until) + 1)
    ]


def _failures(db: Db, since: datetime, until: datetime) -> list[FailureReason]:
    code = func.coalesce(JobRow.error_code, "unknown")
    ranked = (
        select(
            code.label("code"),
            JobRow.error_message.label("message"),
            func.count().over(partition_by=code).label("count"),
            func.row_number()
            .over(partition_by=code, order_by=(JobRow.end_time.desc(), JobRow.id))
            .label("latest"),
        )
        .where(JobRow.status == "failed", _ended(since, until))
        .subquery()
    )
    rows = db.execute(
        select(ranked.c.code, ranked.c["count"], ranked.c.message)
        .where(ranked.c.latest == 1)
        .order_by(ranked.c["count"].desc(), ranked.c.code)
    ).all()
    return [FailureReason(code=c, count=int(n), message=m or "") for c, n, m in rows]


def _spread_rows(db: Db, values: Select[*tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``spreads`` of ``values``: (keys…, n, median, p90) rows with the seconds rounded."""
    rows = db.execute(spreads(values)).all()
    return [(*row[:-3], int(row[-3] or 0), _round(row[-2]), _round(row[-1])) for row in rows]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _stages(db: Db, since: datetime, until: datetime) -> list[StageSpread]:
    values = (
        select(StageDurationRow.stage, StageDurationRow.seconds.label("value"))
        .join(JobRow, JobRow.id == StageDurationRow.job_id)
        .where(*_completed(since, until))
    )
    order = {stage.value: index for index, stage in enumerate(STAGES)}
    found = [
        StageSpread(stage=stage, jobs=n, median=median, p90=p90)
        for stage, n, median, p90 in _spread_rows(db, values)
    ]
    return sorted(found, key=lambda s: (order.get(s.stage, len(order)), s.stage))


def size_label(bucket: int) -> str:
    """A size bucket's range in megapixels: "< 1 MP", "1–4 MP", "≥ 16 MP"."""
    edges = [f"{edge:g}" for edge in BUCKET_EDGES_MP]
    if bucket <= 0:
        return f"< {edges[0]} MP"
    if bucket >= len(edges):
        return f"≥ {edges[-1]} MP"
    return f"{edges[bucket - 1]}–{edges[bucket]} MP"


def _sizes(db: Db, since: datetime, until: datetime) -> list[SizeSpread]:
    values = select(JobRow.size_bucket, _run_seconds().label("value")).where(
        *_completed(since, until)
    )
    rows = sorted(_spread_rows(db, values))
    return [
        SizeSpread(bucket=int(bucket), label=size_label(int(bucket)), jobs=n, median=m, p90=p90)
        for bucket, n, m, p90 in rows
    ]


def _queue_wait(db: Db, since: datetime, until: datetime) -> QueueWait:
    wait = (epoch_seconds(JobRow.start_time) - epoch_seconds(JobRow.created_at)).label("value")
    started = (JobRow.start_time.is_not(None), JobRow.start_time.between(since, until))
    ((jobs, median, p90),) = _spread_rows(db, select(wait).where(*started))
    hour = epoch_hour(JobRow.start_time).label("hour")
    hours = sorted(_spread_rows(db, select(hour, wait).where(*started)))
    return QueueWait(
        overall=Spread(jobs=jobs, median=median, p90=p90),
        hours=[
            HourSpread(hour=_hour_of(int(index)), jobs=n, median=m, p90=p)
            for index, n, m, p in hours
        ],
    )


def _eta(db: Db, since: datetime, until: datetime) -> EtaErrors:
    actual = _run_seconds()
    measured = (*_completed(since, until), JobRow.predicted_seconds.is_not(None), actual > 0)
    error = accuracy.error(JobRow.predicted_seconds, actual)
    jobs, bias = db.execute(select(func.count(), func.avg(error)).where(*measured)).one()
    if not jobs:
        return EtaErrors()
    ((_, median, p90),) = _spread_rows(db, select(func.abs(error).label("value")).where(*measured))
    recent = db.execute(
        select(JobRow.end_time, JobRow.predicted_seconds, actual)
        .where(*measured)
        .order_by(JobRow.end_time.desc(), JobRow.id)
        .limit(ETA_POINTS)
    ).all()
    return EtaErrors(
        jobs=int(jobs),
        median_error=median,
        p90_error=p90,
        mean_bias=_round(bias),
        points=[
            EtaPoint(end_time=end, predicted=round(predicted, 3), actual=round(seconds, 3))
            for end, predicted, seconds in reversed(recent)
            if end is not None and predicted is not None
        ],
    )
