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

from ...engine.stages import Stage
from ..tables import ModelTimingRow, StageDurationRow, StageTimingRow
from .clock import SMOOTHING

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
    def __init__(self, transactions: sessionmaker[Db], smoothing: float = SMOOTHING) -> None:
        self._transactions = transactions
        self._smoothing = smoothing

    def load(self) -> list[tuple[int, str, float, int]]:
        """Every learned row: (bucket, stage, seconds, samples)."""
        with self._transactions() as db:
            rows = db.execute(
                select(
                    StageTimingRow.bucket,
                    StageTimingRow.stage,
                    StageTimingRow.seconds,
                    StageTimingRow.samples,
                )
            ).all()
        return [(int(b), str(s), float(x), int(n)) for b, s, x, n in rows]

    def load_models(self) -> list[tuple[str, float, int]]:
        """Every learned model-stage row: (model, seconds, samples)."""
        with self._transactions() as db:
            rows = db.execute(
                select(ModelTimingRow.model, ModelTimingRow.seconds, ModelTimingRow.samples)
            ).all()
        return [(str(m), float(x), int(n)) for m, x, n in rows]

    def observe(self, bucket: int, timings: dict[str, float], model: str | None = None) -> None:
        """Fold one finished job's stage timings in, in one transaction; the first sample
        replaces nothing but itself (as ``StageClock.observe`` does in memory). A job that
        chose ``model``: its model stage is that model's, not the bucket's."""
        stages = dict(timings)
        inference = stages.pop(Stage.INFERENCE.value, None) if model is not None else None
        if not stages and inference is None:
            return
        with self._transactions.begin() as db:
            for stage, seconds in stages.items():
                self._fold(db, StageTimingRow, {"bucket": bucket, "stage": stage}, seconds)
            if model is not None and inference is not None:
                self._fold(db, ModelTimingRow, {"model": model}, inference)

    def _fold(
        self,
        db: Db,
        table: type[StageTimingRow] | type[ModelTimingRow],
        key: dict[str, object],
        seconds: float,
    ) -> None:
        """One atomic decaying-average step of the row ``key`` names (made if missing)."""
        postgresql = db.get_bind().dialect.name == "postgresql"
        insert = postgresql_insert if postgresql else sqlite_insert
        db.execute(
            insert(table).values({**key, "seconds": seconds, "samples": 0}).on_conflict_do_nothing()
        )
        db.execute(
            update(table)
            .where(*(getattr(table, column) == value for column, value in key.items()))
            .values(
                seconds=case(
                    (table.samples == 0, seconds),
                    else_=table.seconds + self._smoothing * (seconds - table.seconds),
                ),
                samples=table.samples + 1,
            ),
            execution_options={"synchronize_session": False},
        )
