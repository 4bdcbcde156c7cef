"""Browser logins in the job database, so every web process of a deployment shares them: a
login made on one works on all, and a logout on one ends it on all.

A row holds a key derived from the cookie's random value (by the web layer, with the access
token), never the value itself, and an expiry. Expired rows are deleted as new logins are
made, so the table holds at most the logins of one lifetime."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from .tables import LoginRow


class LoginStore:
    def __init__(self, transactions: sessionmaker[Db]) -> None:
        self._transactions = transactions

    def add(self, key: str, now: datetime, expires_at: datetime) -> None:
        """Record a new login (and forget those that expired)."""
        with self._transactions.begin() as db:
            db.execute(delete(LoginRow).where(LoginRow.expires_at <= now))
            db.add(LoginRow(key=key, created_at=now, expires_at=expires_at))

    def alive(self, key: str, now: datetime) -> bool:
        """Whether ``key`` is a login that has not expired or been ended."""
        with self._transactions() as db:
            expires = db.scalar(select(LoginRow.expires_at).where(LoginRow.key == key))
            return expires is not None and expires > now

    def end(self, key: str) -> None:
        """End one login (logout)."""
        with self._transactions.begin() as db:
            db.execute(delete(LoginRow).where(LoginRow.key == key))

    def end_all(self) -> int:
        """End every login (logout everywhere); how many there were."""
        with self._transactions.begin() as db:
            return int(db.execute(delete(LoginRow)).rowcount)  # type: ignore[attr-defined]
