"""The progress-tracking core: store, state machine, batches and sessions, ETA, events.

Names are imported on first use, so a command that needs only ``jobs.eta`` (the CLI's
estimates) does not pay for the database layer at start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Event, EventBus, InMemoryEventBus, Subscription
    from .schemas import Batch, BatchCreated, CancelResult, Job, RetryResult, Session, Upload
    from .service import JobService
    from .states import InvalidTransition, JobStatus, NotFound

_HOMES = {
    "Event": "events",
    "EventBus": "events",
    "InMemoryEventBus": "events",
    "Subscription": "events",
    "Batch": "schemas",
    "BatchCreated": "schemas",
    "CancelResult": "schemas",
    "Job": "schemas",
    "RetryResult": "schemas",
    "Session": "schemas",
    "Upload": "schemas",
    "JobService": "service",
    "InvalidTransition": "states",
    "JobStatus": "states",
    "NotFound": "states",
}

__all__ = [
    "Batch",
    "BatchCreated",
    "CancelResult",
    "Event",
    "EventBus",
    "InMemoryEventBus",
    "InvalidTransition",
    "Job",
    "JobService",
    "JobStatus",
    "NotFound",
    "RetryResult",
    "Session",
    "Subscription",
    "Upload",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
