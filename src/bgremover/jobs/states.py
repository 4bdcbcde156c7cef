"""The one job state machine: which status may follow which, and the error when not."""

from __future__ import annotations

from typing import Literal, get_args

JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
"""Every status, in the order batches count them (the ``<status>_jobs`` columns)."""
TERMINAL: frozenset[JobStatus] = frozenset({"completed", "failed", "cancelled"})
ACTIVE: frozenset[JobStatus] = frozenset({"pending", "processing"})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    "pending": frozenset({"processing", "cancelled"}),
    # processing -> pending: re-queued after a restart left the job mid-run.
    "processing": frozenset({"completed", "failed", "cancelled", "pending"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
RETRYABLE: frozenset[JobStatus] = frozenset({"failed", "cancelled"})


class InvalidTransition(Exception):
    """A change of status the state machine does not allow (HTTP 409)."""

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        super().__init__(f"job {job_id} is {current}; it cannot become {wanted}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


class NotFound(Exception):
    """No such job, batch or session (HTTP 404)."""

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"no {kind} with id {ident}")
        self.kind = kind
        self.ident = ident


def batch_status(
    *, total: int, pending: int, processing: int, completed: int, failed: int, cancelled: int
) -> JobStatus:
    """A batch's status from its counts: active while any job is, else how it ended."""
    if processing or (pending and pending < total):
        return "processing"
    if pending or total == 0:
        return "pending"
    if completed:
        return "completed"
    return "failed" if failed else "cancelled"
