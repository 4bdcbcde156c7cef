"""SQL that reads the same on SQLite and PostgreSQL: seconds since the epoch, hour buckets
and percentiles.

The two share no function for these: PostgreSQL has ``EXTRACT(EPOCH …)``, ``date_trunc`` and
``percentile_cont``, SQLite has ``julianday`` and ``strftime`` and no percentile at all. The
time functions are compiled per dialect; percentiles are built from window functions both
have (``row_number``, ``count``), so the statistics are computed where the rows are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Float, Select, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

HOUR = 3600

# The two constructs below are named in lower case, like the SQL functions they stand for.


class epoch_seconds(FunctionElement[float]):
    """Seconds since 1970-01-01 UTC of a timestamp column (stored as naive UTC)."""

    type = Float()
    inherit_cache = True


class epoch_hour(FunctionElement[int]):
    """Whole hours since 1970-01-01 UTC of a timestamp column: its hour bucket."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # julianday keeps milliseconds; 2440587.5 is the Julian day of the Unix epoch.
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch_seconds, "postgresql")
def _epoch_seconds_postgresql(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS FLOAT)"


@compiles(epoch_hour, "sqlite")
def _epoch_hour_sqlite(element: epoch_hour, compiler: SQLCompiler, **kw: Any) -> str:
    # Whole seconds as an integer, then integer division: exact at the hour's edge.
    column = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / {HOUR})"


@compiles(epoch_hour, "postgresql")
def _epoch_hour_postgresql(element: epoch_hour, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column}) / {HOUR}) AS BIGINT)"


def spreads(
    values: Select[*tuple[Any, ...]], fractions: Sequence[float] = (0.5, 0.9)
) -> Select[*tuple[Any, ...]]:
    """One row per key of ``values`` (which selects its key columns, then a column labelled
    ``value``): the keys, ``n`` (how many values) and one column ``p0``, ``p1``, … per
    fraction, the percentile interpolated linearly between the closest ranks, as
    PostgreSQL's ``percentile_cont`` and numpy's default do. Without keys: one row (its
    ``n`` is NULL when there were no values).

    Each value of rank ``r`` (1-based) among ``n`` weighs ``max(0, 1 - |r - pos|)`` in the
    sum for position ``pos = 1 + fraction × (n - 1)``: the two ranks around ``pos`` share
    the weight, every other rank gets none."""
    source = values.subquery()
    keys = [column for column in source.c if column.name != "value"]
    ranked = select(
        *keys,
        source.c.value,
        func.row_number().over(partition_by=keys or None, order_by=source.c.value).label("r"),
        func.count().over(partition_by=keys or None).label("n"),
    ).subquery()
    ranked_keys = [ranked.c[column.name] for column in keys]
    rank, count = ranked.c.r, ranked.c.n
    percentiles = []
    for index, fraction in enumerate(fractions):
        distance = func.abs(rank - (1 + literal(fraction, Float()) * (count - 1)))
        weight = case((distance < 1, 1 - distance), else_=0.0)
        percentiles.append(func.sum(ranked.c.value * weight).label(f"p{index}"))
    return select(*ranked_keys, func.max(count).label("n"), *percentiles).group_by(*ranked_keys)
