"""The model's masks kept in the store, so nothing is computed twice.

A worker derives a mask's storage key itself (``FileStore.mask_key``: a hash of the original's
content, the model and the mask version), reuses the file when it is there and readable, and
otherwise runs the model and stores its mask (a storage put is atomic, so two workers writing
the same key are safe). Its report names the key; the job service records it here, in the
transaction that completes the job. Rows bound the total (``mask_cache_bytes``, least recently
used out first) and tie each mask to its original: retention deletes both with the last job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..storage import check_key
from ..storage.files import FileStore
from .tables import MaskRow

log = logging.getLogger(__name__)

_EVICT_BATCH = 100


def is_mask_key(key: str) -> bool:
    """Whether ``key`` has the shape of a mask's storage key (a worker's report says it; only
    such a key is recorded or deleted as a mask, never an original or a result)."""
    try:
        return check_key(key).startswith("masks/")
    except ValueError:
        return False


def record(db: Db, key: str, content_hash: str, size: int, now: datetime) -> None:
    """A run made or reused the mask ``key`` of ``content_hash``, ``size`` bytes: keep it (or
    mark it used now). ValueError for a key that is not a mask's."""
    if not is_mask_key(key):
        raise ValueError(f"{key[:80]!r} is not a mask key")
    postgresql = db.get_bind().dialect.name == "postgresql"
    insert = postgresql_insert if postgresql else sqlite_insert
    row = {"key": key, "content_hash": content_hash, "bytes": size, "last_used": now}
    db.execute(
        insert(MaskRow)
        .values(row)
        .on_conflict_do_update(index_elements=[MaskRow.key], set_={"bytes": size, "last_used": now})
    )


def delete_for(db: Db, files: FileStore, content_hash: str) -> int:
    """Delete the masks of an original nobody uses any more; how many files were there."""
    keys = db.scalars(select(MaskRow.key).where(MaskRow.content_hash == content_hash)).all()
    if not keys:
        return 0
    db.execute(delete(MaskRow).where(MaskRow.key.in_(keys)))
    return sum(files.delete(key) for key in keys)


def recorded(db: Db, key: str) -> bool:
    """Whether the mask ``key`` is kept on record (a file without a row is nobody's)."""
    return db.get(MaskRow, key) is not None


def cached(db: Db, content_hashes: Iterable[str]) -> set[str]:
    """Which of these originals have a mask kept (their next run skips the model)."""
    wanted = set(content_hashes)
    if not wanted:
        return set()
    return set(
        db.scalars(select(MaskRow.content_hash).where(MaskRow.content_hash.in_(wanted)).distinct())
    )


def evict(transactions: sessionmaker[Db], files: FileStore, limit: int) -> int:
    """Delete the least recently used masks until they take at most ``limit`` bytes; how
    many were deleted. Rows go first, files after the commit: a run that reads a file just
    deleted runs the model instead."""
    evicted = 0
    while True:
        with transactions.begin() as db:
            total = db.scalar(select(func.coalesce(func.sum(MaskRow.bytes), 0))) or 0
            if total <= limit:
                return evicted
            oldest = db.execute(
                select(MaskRow.key, MaskRow.bytes)
                .order_by(MaskRow.last_used, MaskRow.key)
                .limit(_EVICT_BATCH)
            ).all()
            chosen = []
            for key, size in oldest:
                chosen.append(key)
                total -= size
                if total <= limit:
                    break
            db.execute(delete(MaskRow).where(MaskRow.key.in_(chosen)))
        for key in chosen:
            files.delete(key)
        evicted += len(chosen)
        log.info("mask cache over %d bytes: deleted %d least recently used", limit, len(chosen))
