"""Numbers every process takes from the same place: the queue order and the event seq.

On PostgreSQL the event seq is a native sequence (``nextval`` takes no row lock); the queue
order, and on SQLite the event seq too, is a row of the ``counters`` table advanced by one
``UPDATE … RETURNING``, which holds its row until the transaction commits, so numbers come out
in commit order and never twice.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text, update
from sqlalchemy.orm import Session as Db

from .tables import CounterRow

EVENT_SEQUENCE = "bgremover_event_seq"


def take(db: Db | Connection, name: str, count: int = 1) -> int:
    """Advance counter ``name`` by ``count`` inside ``db``'s transaction; the first number
    taken (the numbers ``first .. first + count - 1`` are this caller's)."""
    last = db.execute(
        update(CounterRow)
        .where(CounterRow.name == name)
        .values(value=CounterRow.value + count)
        .returning(CounterRow.value)
    ).scalar_one()
    return int(last) - count + 1


def advance_to(db: Db | Connection, name: str, value: int | None) -> None:
    """Make counter ``name`` at least ``value`` (after rows arrived with numbers of their own)."""
    if value is not None:
        db.execute(
            update(CounterRow)
            .where(CounterRow.name == name, CounterRow.value < value)
            .values(value=value)
        )


class EventSeq:
    """The event bus's seq source: shared by every process on the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._native = engine.dialect.name == "postgresql"

    def take(self, count: int) -> list[int]:
        """``count`` new seqs in ascending order (another process may hold the numbers
        between them)."""
        with self._engine.begin() as connection:
            if self._native:
                values = connection.execute(
                    text(f"SELECT nextval('{EVENT_SEQUENCE}') FROM generate_series(1, :n)"),
                    {"n": count},
                ).scalars()
                return sorted(int(v) for v in values)
            first = take(connection, "event_seq", count)
            return list(range(first, first + count))

    def last(self) -> int:
        """The newest seq handed out by any process."""
        with self._engine.connect() as connection:
            if self._native:
                row = connection.execute(
                    text(f"SELECT last_value, is_called FROM {EVENT_SEQUENCE}")
                ).one()
                return int(row[0]) if row[1] else int(row[0]) - 1
            value = connection.execute(
                text("SELECT value FROM counters WHERE name = 'event_seq'")
            ).scalar_one()
            return int(value)
