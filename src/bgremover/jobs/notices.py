"""The events the job system publishes, built from its rows and worded for people: each
function returns one ``(type, data)`` pair. The types and payload models are the bus's
(``bus.base``)."""

from __future__ import annotations

from typing import Any

from ..dependencies import DependencyState
from .bus.base import JobDeleted, JobProgress, JobRef, NoticeKind, Notification, Published
from .schemas import Batch, Job, Queue, Session
from .tables import BatchRow


def job_updated(job: Job) -> Published:
    return ("job.updated", {"job": job.model_dump(mode="json")})


def job_deleted(job_id: str) -> Published:
    return ("job.deleted", JobDeleted(job=JobRef(id=job_id)).model_dump(mode="json"))


def batch_updated(batch: Batch) -> Published:
    return ("batch.updated", {"batch": batch.model_dump(mode="json")})


def session_updated(session: Session) -> Published:
    return ("session.updated", {"session": session.model_dump(mode="json")})


def queue_updated(queue: Queue) -> Published:
    return ("queue.updated", {"queue": queue.model_dump(mode="json")})


def progress(update: JobProgress) -> dict[str, Any]:
    return update.model_dump()


def notice(notification: Notification) -> Published:
    return ("notification", notification.model_dump(exclude_none=True))


def job_failed(job_id: str, batch_id: str, file_name: str, message: str | None) -> Published:
    return notice(
        Notification(
            kind="error",
            title=f"Couldn't process {file_name}",
            body=message or "Processing failed",
            job_id=job_id,
            batch_id=batch_id,
        )
    )


def job_requeued(
    job_id: str, batch_id: str, file_name: str, reason: str, attempt: int, *, outage: bool
) -> Published:
    """A lost run: its worker died (``outage`` False), or what it needed failed under it."""
    what = "It was interrupted" if outage else "Its worker was lost"
    return notice(
        Notification(
            kind="warning",
            title=f"Retrying {file_name}",
            body=f"{what} ({reason}); it runs again as attempt {attempt}.",
            job_id=job_id,
            batch_id=batch_id,
        )
    )


def health_updated(dependency: str, state: DependencyState) -> Published:
    """A dependency failed or works again: every open UI shows or clears its banner."""
    return ("health.updated", {dependency: state.as_json()})


def batch_finished(batch: BatchRow) -> Published:
    parts = [
        f"{n} {label}"
        for n, label in (
            (batch.completed_jobs, "done"),
            (batch.failed_jobs, "failed"),
            (batch.cancelled_jobs, "cancelled"),
        )
        if n
    ]
    kind: NoticeKind = "success" if batch.failed_jobs == 0 and batch.completed_jobs else "warning"
    if batch.completed_jobs == 0 and batch.failed_jobs:
        kind = "error"
    return notice(
        Notification(
            kind=kind,
            title=f"Batch finished: {batch.name}",
            body=", ".join(parts),
            batch_id=batch.id,
            session_id=batch.session_id,
        )
    )


def session_finished(session: Session) -> Published:
    c = session.counts
    return notice(
        Notification(
            kind="info",
            title=f"Session complete: {session.name}",
            body=f"{len(session.batch_ids)} batches, {c.completed} done, {c.failed} failed, "
            f"{c.cancelled} cancelled",
            session_id=session.id,
        )
    )
