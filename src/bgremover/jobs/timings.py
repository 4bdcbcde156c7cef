"""Learned stage timings in the database: kept across restarts, shared by every process.

Each finished job folds its stage timings into the rows of its size bucket with one atomic
``UPDATE … SET seconds = seconds + a * (x - seconds)``, so observations from any number of
processes all count; each process reads the rows back into its ``StageClock``. Each completed
run also keeps its own stage durations (``record_run``): the samples analytics reports on.
"""

from __future__ import annotations

import math

from sqlalchemy import case, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..engine.stages import Stage
from .eta import SMOOTHING
from .tables import StageDurationRow, StageTimingRow

STAGE_NAMES = frozenset(stage.value for stage in Stage)


def record_run(db: Db, job_id: str, timings: dict[str, float]) -> None:
    """Keep the seconds each stage of a completed run took, in the transaction that completes
    it; names that are not stages and impossible values (a worker's report) are left out."""
    rows = [
        {"job_id": job_id, "stage": stage, "seconds": seconds}
        for stage, seconds in timings.items()
        if stage in STAGE_NAMES and math.isfinite(seconds) and seconds >= 0
    ]
    if rows:
        db.execute(insert(StageDurationRow), rows)


class TimingStore:
    def __init__(self, sessions: sessionmaker[Db], smoothing: float = SMOOTHING) -> None:
        self._sessions = sessions
        self._smoothing = smoothing

    def load(self) -> list[tuple[int, str, float, int]]:
        """Every learned row: (bucket, stage, seconds, samples)."""
        with self._sessions() as db:
            rows = db.execute(
                select(
                    StageTimingRow.bucket,
                    StageTimingRow.stage,
                    StageTimingRow.seconds,
                    StageTimingRow.samples,
                )
            ).all()
        return [(int(b), str(s), float(x), int(n)) for b, s, x, n in rows]

    def observe(self, bucket: int, timings: dict[str, float]) -> None:
        """Fold one finished job's stage timings in; the first sample replaces nothing but
        itself (as ``StageClock.observe`` does in memory)."""
        if not timings:
            return
        with self._sessions.begin() as db:
            postgresql = db.get_bind().dialect.name == "postgresql"
            insert = postgresql_insert if postgresql else sqlite_insert
            db.execute(
                insert(StageTimingRow)
                .values(
                    [
                        {"bucket": bucket, "stage": stage, "seconds": seconds, "samples": 0}
                        for stage, seconds in timings.items()
                    ]
                )
                .on_conflict_do_nothing()
            )
            for stage, seconds in timings.items():
                db.execute(
                    update(StageTimingRow)
                    .where(StageTimingRow.bucket == bucket, StageTimingRow.stage == stage)
                    .values(
                        seconds=case(
                            (StageTimingRow.samples == 0, seconds),
                            else_=StageTimingRow.seconds
                            + self._smoothing * (seconds - StageTimingRow.seconds),
                        ),
                        samples=StageTimingRow.samples + 1,
                    ),
                    execution_options={"synchronize_session": False},
                )
