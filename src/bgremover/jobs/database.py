"""Connecting to the job database and bringing its schema up to date with Alembic."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import sessionmaker

from . import metrics

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


MIGRATE_LOCK = 0x62676D67  # "bgmg"


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'jobs.sqlite3'}"


def connect(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database did not answer (down, restarting, its connection
    cut, SQLite busy): an outage a retry outlives, not a bad statement. A database that
    answers but cannot write is not: its callers keep what they could not write
    (``cannot_write``) instead of waiting with it."""
    if isinstance(exc, OperationalError | InterfaceError):
        return not cannot_write(exc)
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def cannot_write(exc: BaseException) -> bool:
    """Whether the database answered but could not write: its disk is full or failing
    (SQLite's SQLITE_FULL and SQLITE_IOERR, with any extended code; PostgreSQL's
    ``disk_full``)."""
    original = getattr(exc, "orig", exc)
    code = getattr(original, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
        return True
    return getattr(original, "sqlstate", None) == "53100"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied (idempotent). A database already at
    the head is only asked its revision: Alembic's upgrade would load every migration's
    module again, for each database a process opens."""
    config = _alembic_config()
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Processes starting together (web processes, workers) migrate one at a time.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})
        current = MigrationContext.configure(connection).get_current_heads()
        if set(current) == _heads():
            return
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def _heads() -> frozenset[str]:
    """The migrations' head revisions (read once per process)."""
    return frozenset(ScriptDirectory.from_config(_alembic_config()).get_heads())


def session_factory(engine: Engine) -> sessionmaker[Any]:
    transactions = sessionmaker(engine, expire_on_commit=False)
    metrics.install(transactions)
    return transactions
