"""The one place a job row is made: a new upload, a retry, or a derived job."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import Any

from .eta.clock import size_bucket
from .tables import JobRow


def new_id() -> str:
    return uuid.uuid4().hex


def process_identity() -> str:
    """ "host/pid/token": who holds a lease; the token tells a reused pid apart."""
    return f"{socket.gethostname()}/{os.getpid()}/{new_id()[:8]}"


def new_job_row(
    *,
    batch_id: str,
    file_name: str,
    file_size: int,
    content_hash: str,
    media_type: str | None,
    width: int | None,
    height: int | None,
    priority: int,
    queue_order: int,
    options: dict[str, Any],
    now: datetime,
    attempt: int = 1,
    retried_from: str | None = None,
    frames: int | None = None,
) -> JobRow:
    """A pending job, first in nothing: ``queue_order`` places it in the queue."""
    return JobRow(
        id=new_id(),
        batch_id=batch_id,
        file_name=file_name,
        file_size=file_size,
        content_hash=content_hash,
        media_type=media_type,
        width=width,
        height=height,
        frames=frames,
        status="pending",
        progress=0.0,
        priority=priority,
        queue_order=queue_order,
        attempt=attempt,
        retried_from=retried_from,
        superseded=False,
        lost_runs=0,
        size_bucket=size_bucket(width, height),
        options=options,
        created_at=now,
        queued_at=now,
    )


def copy_of(
    row: JobRow,
    *,
    queue_order: int,
    now: datetime,
    retry: bool,
    options: dict[str, Any] | None,
) -> JobRow:
    """A new pending job on ``row``'s original: its next attempt (a retry) or a derived job
    with other output options."""
    return new_job_row(
        batch_id=row.batch_id,
        file_name=row.file_name,
        file_size=row.file_size,
        content_hash=row.content_hash,
        media_type=row.media_type,
        width=row.width,
        height=row.height,
        priority=row.priority,
        queue_order=queue_order,
        options=row.options if options is None else options,
        now=now,
        attempt=row.attempt + 1 if retry else 1,
        retried_from=row.id if retry else None,
        frames=row.frames,
    )
