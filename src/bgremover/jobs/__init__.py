"""The progress-tracking core: store, state machine, batches and sessions, ETA, events."""

from .events import Event, EventBus, InMemoryEventBus, Subscription
from .schemas import Batch, BatchCreated, CancelResult, Job, RetryResult, Session, Upload
from .service import JobService
from .states import InvalidTransition, JobStatus, NotFound
from .system import JobSystem

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
    "JobSystem",
    "NotFound",
    "RetryResult",
    "Session",
    "Subscription",
    "Upload",
]
