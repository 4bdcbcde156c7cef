"""/api/analytics: the aggregates behind the UI's charts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ..jobs.analytics import Analytics, InvalidWindow
from .deps import Service
from .errors import ApiError

router = APIRouter(prefix="/api", tags=["analytics"])

Since = Annotated[
    str | None,
    Query(
        max_length=64,
        description=(
            "Start of the window: an ISO 8601 time (UTC unless it names a zone, e.g. "
            "2026-11-29T08:00:00Z) or a span back from now (90m, 24h, 7d, 2w, PT6H, P7D); "
            "default 24h, at most 90 days."
        ),
    ),
]


@router.get("/analytics", response_model=Analytics)
def analytics(service: Service, since: Since = None) -> Analytics:
    """Images per hour, failures by reason, median and 90th-percentile durations per stage
    and per image size, queue wait and ETA error, from ``since`` to now."""
    try:
        return service.analytics(since)
    except InvalidWindow as exc:
        raise ApiError(422, "invalid_since", str(exc)) from None
