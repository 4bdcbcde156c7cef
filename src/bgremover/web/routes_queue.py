"""/api/queue: the whole queue's state, and pausing or resuming it (``jobs/pauses.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from ..jobs.schemas import Queue
from .auth import requester
from .deps import Service

router = APIRouter(prefix="/api/queue", tags=["queue"])


@router.get("", response_model=Queue)
def get_queue(service: Service) -> Queue:
    """Paused or not, who paused it and when, the batches paused on their own, and jobs by
    status: the same object the ``queue.updated`` event carries."""
    return service.queue()


@router.post("/pause", response_model=Queue)
def pause(
    request: Request,
    service: Service,
    cancel_running: Annotated[
        bool,
        Query(description="Also stop running jobs; they go back to the queue, uncounted"),
    ] = False,
) -> Queue:
    """Start no pending job, in any process, until resumed; running jobs finish (unless
    ``cancel_running``). Paused jobs stay pending; the state survives restarts."""
    return service.pause_queue(requester(request), cancel_running=cancel_running)


@router.post("/resume", response_model=Queue)
def resume(service: Service) -> Queue:
    return service.resume_queue()
