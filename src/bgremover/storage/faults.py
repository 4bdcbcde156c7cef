"""Telling a store that cannot take files now from a file that cannot be stored.

A full, read-only or failing disk (or a bucket that does not answer) is nobody's image's
fault: the same write succeeds once the store is fixed. Callers turn such a fault into "wait
and try again", and show people ``reason``, which never names a server path or address.
"""

from __future__ import annotations

import errno

from .base import StorageError

OUTAGE_ERRNOS = {
    errno.ENOSPC: "is full",
    errno.EDQUOT: "is over its disk quota",
    errno.EROFS: "is read-only",
    errno.EIO: "has input/output errors",
}
"""OS errors that say the store itself is failing, with how people are told."""


class StorageUnavailable(StorageError):
    """The store cannot be used now (full, read-only, failing, unreachable); the message has
    the detail for the log, ``reason`` the words for people ("results storage is full")."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def errno_reason(code: int | None) -> str | None:
    """ "results storage is full" for ENOSPC (and so on); None for an error of the file."""
    said = OUTAGE_ERRNOS.get(code) if code is not None else None
    return f"results storage {said}" if said else None


def outage_reason(exc: BaseException) -> str | None:
    """Why the store as a whole is failing, for people, when ``exc`` (or what caused it) says
    so; None when the error is about one file or a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return current.reason
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            reason = errno_reason(current.errno)
            if reason:
                return reason
        current = current.__cause__ or current.__context__
    return None
