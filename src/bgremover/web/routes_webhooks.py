"""/api/webhooks: endpoints that get signed job and batch events, and what was sent to them.

A URL is checked here (its form, and every address its host resolves to) and again at each
send (``webhooks.guard``); nothing is sent from a request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from ..webhooks.guard import Refused, check_url
from ..webhooks.store import Attempt, Webhook, WebhookCreated, WebhookIn, WebhookStore
from .deps import AppSettings, get_system
from .errors import ApiError

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def get_webhooks(request: Request) -> WebhookStore:
    return get_system(request).webhooks


Webhooks = Annotated[WebhookStore, Depends(get_webhooks)]


def checked_url(url: str, settings: AppSettings) -> str:
    """``url`` if a webhook may go there; a 422 naming the reason otherwise."""
    try:
        return check_url(url, allow_private=settings.webhook_allow_private)
    except Refused as exc:
        raise ApiError(422, "webhook_url_refused", str(exc)) from None


REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"description": "The URL is not one a webhook may go to"}
}


@router.post("", status_code=201, response_model=WebhookCreated, responses=REFUSED)
def create_webhook(new: WebhookIn, webhooks: Webhooks, settings: AppSettings) -> WebhookCreated:
    """Send ``events`` to ``url``, signed (Standard Webhooks: ``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``) with the ``secret`` in this answer, which
    is never shown again. Deliveries are retried with backoff for
    ``BGREMOVER_WEBHOOK_RETRY_PERIOD`` (24 h) until the receiver answers 2xx."""
    return webhooks.create(new, checked_url(new.url, settings))


@router.get("", response_model=list[Webhook])
def list_webhooks(webhooks: Webhooks) -> list[Webhook]:
    """Every endpoint (upload callbacks too, with their ``batch_id``); never the secrets."""
    return webhooks.endpoints()


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
def delete_webhook(webhook_id: str, webhooks: Webhooks) -> Response:
    """Stop sending to it; deliveries still owed to it are dropped."""
    webhooks.delete(webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=list[Attempt])
def deliveries(
    webhook_id: str,
    webhooks: Webhooks,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[Attempt]:
    """The last attempts to send to it, newest first: HTTP status, latency, error and the
    start of the answer."""
    return webhooks.attempts(webhook_id, limit)
