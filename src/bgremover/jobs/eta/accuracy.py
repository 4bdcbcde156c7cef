"""How far the estimates were from the truth. The error of one job is defined once here
(``error``) and used alike by ``/api/stats`` (``recent``), ``/api/analytics`` (in SQL) and the
``eta_error_ratio`` metric."""

from __future__ import annotations

import statistics
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session as Db

from ..schemas import EtaAccuracy
from ..tables import JobRow

RECENT_JOBS = 100
"""``/api/stats`` measures the estimates of this many most recently completed jobs."""

Seconds = TypeVar("Seconds")


def error(predicted: Seconds, actual: Seconds) -> Seconds:
    """The signed relative error of an estimate, (predicted − actual) / actual: for numbers,
    or for SQL column expressions (the same arithmetic, so analytics computes it in SQL)."""
    return (predicted - actual) / actual  # type: ignore[operator,no-any-return]


def recent(db: Db, jobs: int = RECENT_JOBS) -> EtaAccuracy | None:
    """The median absolute error and mean bias of the last ``jobs`` completed estimates."""
    rows = db.execute(
        select(JobRow.predicted_seconds, JobRow.start_time, JobRow.end_time)
        .where(JobRow.status == "completed", JobRow.predicted_seconds.is_not(None))
        .order_by(JobRow.end_time.desc())
        .limit(jobs)
    ).all()
    errors = []
    for predicted, start, end in rows:
        actual = (end - start).total_seconds() if start and end else 0.0
        if predicted is not None and actual > 0:
            errors.append(error(predicted, actual))
    if not errors:
        return None
    return EtaAccuracy(
        jobs=len(errors),
        median_error=round(statistics.median(abs(e) for e in errors), 3),
        mean_bias=round(statistics.fmean(errors), 3),
    )
