"""Numbers every process takes from the same place: the queue order and the event seq.

On PostgreSQL the event seq is a native sequence (``nextval`` takes no row lock); the queue
order, and on SQLite the event seq too, is a row of the ``counters`` table advanced by one
``UPDATE … RETURNING``, which holds its row until the transaction commits, so numbers come out
in commit order and never twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, text, update
from sqlalchemy.orm import Session as Db

from ..dependencies import first_line
from .bus.base import BusUnavailable
from .database import cannot_write, unreachable
from .tables import CounterRow

T = TypeVar("T")

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
    """The event bus's seq source: shared by every process on the database, so an event id
    means the same everywhere and never goes back, whatever happens to the event stream.
    Raises ``BusUnavailable`` while the database does not answer."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._native = engine.dialect.name == "postgresql"

    def take(self, count: int) -> list[int]:
        """``count`` new seqs in ascending order (another process may hold the numbers
        between them)."""

        def taken(connection: Connection) -> list[int]:
            if self._native:
                values = connection.execute(
                    text(f"SELECT nextval('{EVENT_SEQUENCE}') FROM generate_series(1, :n)"),
                    {"n": count},
                ).scalars()
                return sorted(int(v) for v in values)
            first = take(connection, "event_seq", count)
            return list(range(first, first + count))

        return self._in_transaction(taken)

    def advance(self, value: int) -> None:
        """Make every later seq larger than ``value`` (one handed out elsewhere: events
        published while another process took its seqs)."""

        def advanced(connection: Connection) -> None:
            if self._native:
                # Only forward: nextval is atomic; setval follows only when it is behind.
                connection.execute(
                    text(
                        f"SELECT CASE WHEN nextval('{EVENT_SEQUENCE}') < :v "
                        f"THEN setval('{EVENT_SEQUENCE}', :v) END"
                    ),
                    {"v": value},
                )
            else:
                advance_to(connection, "event_seq", value)

        self._in_transaction(advanced)

    def last(self) -> int:
        """The newest seq handed out by any process."""

        def newest(connection: Connection) -> int:
            if self._native:
                row = connection.execute(
                    text(f"SELECT last_value, is_called FROM {EVENT_SEQUENCE}")
                ).one()
                return int(row[0]) if row[1] else int(row[0]) - 1
            value = connection.execute(
                text("SELECT value FROM counters WHERE name = 'event_seq'")
            ).scalar_one()
            return int(value)

        return self._in_transaction(newest)

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        try:
            with self._engine.begin() as connection:
                return work(connection)
        except Exception as exc:
            if unreachable(exc) or cannot_write(exc):
                reason = first_line(exc)
                raise BusUnavailable(
                    "database", f"cannot take event ids from the database: {reason}"
                ) from exc
            raise
