"""The dispatcher: claims due deliveries from the outbox, sends them, records each attempt.

Every web process may run one; the database decides who sends what. A claim is one
conditional UPDATE over due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, as jobs are
claimed; SQLite runs it under its single writer lock) that gives them this process's name
and a lease. A sender that dies holding rows loses them when the lease runs out, and another
process sends them again: at least once, with the same ``webhook-id`` every time for the
receiver to drop repeats by.

It sends as soon as an event on the bus says a job ended (any process's, on the cluster's
shared bus), and otherwise wakes for the next retry that falls due, at least every
``POLL_S``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..config import Settings
from ..dependencies import first_line
from ..jobs import metrics
from ..jobs.bus.base import Event, EventBus, Subscription
from ..jobs.rows import process_identity
from ..jobs.states import TERMINAL
from ..jobs.tables import DateTime, WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow
from ..jobs.times import utcnow
from .sender import Outcome, Sender

log = logging.getLogger(__name__)

POLL_S = 1.0
LEASE_FACTOR = 3
"""A claim's lease is this many times the most an attempt may take."""
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class Claimed:
    id: str
    url: str
    secret: str
    payload: str
    attempts: int
    created_at: datetime


def wakes(event: Event) -> bool:
    """Whether ``event`` may have come with new deliveries (a job ended) or means some were
    missed (a resync)."""
    if event.type == "resync":
        return True
    job = event.data.get("job") if event.type == "job.updated" else None
    return isinstance(job, dict) and job.get("status") in TERMINAL


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        transactions: sessionmaker[Db],
        bus: EventBus,
        *,
        now: Callable[[], datetime] = utcnow,
        owner: str | None = None,
    ) -> None:
        self._settings = settings
        self._transactions = transactions
        self._bus = bus
        self._now = now
        self.owner = owner or process_identity()
        timeout = settings.webhook_timeout.total_seconds()
        self._lease = timedelta(seconds=timeout * LEASE_FACTOR)
        self._sender = Sender(
            allow_private=settings.webhook_allow_private,
            connect_timeout=settings.webhook_connect_timeout.total_seconds(),
            timeout=timeout,
        )
        self._slots = settings.webhook_senders
        self._busy = 0
        self._woken = False
        self._changed = threading.Condition()
        self._stopping = False
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ lifetime

    def start(self) -> Dispatcher:
        """Start sending (unless ``webhook_senders`` is 0: then others do)."""
        if self._slots == 0:
            return self
        self._pool = ThreadPoolExecutor(self._slots, thread_name_prefix="bgremover-webhook")
        self._thread = threading.Thread(target=self._run, name="bgremover-webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop claiming and wait for the attempts under way (each ends by its deadline); a
        claimed row not sent goes to another process when its lease ends."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def _run(self) -> None:
        next_prune = 0.0
        wait = 0.0
        failing = False
        with self._bus.subscribe() as events:
            listener = threading.Thread(
                target=self._listen, args=(events,), name="bgremover-webhook-events", daemon=True
            )
            listener.start()
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._woken or self._stopping, wait)
                    if self._stopping:
                        return
                    self._woken = False
                try:
                    self.dispatch()
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_EVERY_S
                        self.prune()
                    with self._changed:
                        full = self._busy >= self._slots
                    wait = POLL_S if full else self._until_due()  # a freed sender wakes it
                except Exception as exc:  # keep sending whatever a round met (a database outage)
                    if not failing:
                        log.warning("webhook dispatch failed (%s); retrying", first_line(exc))
                    failing, wait = True, POLL_S
                else:
                    if failing:
                        log.info("webhook dispatch works again")
                    failing = False

    def _listen(self, events: Subscription) -> None:
        while not self._stopping:
            event = events.get(timeout=0.5)
            if event is not None and wakes(event):
                self.wake()

    def _until_due(self) -> float:
        """Seconds until a delivery falls due that no sender holds (at most ``POLL_S``)."""
        D = WebhookDeliveryRow
        free_at = case((D.lease_until > D.next_attempt_at, D.lease_until), else_=D.next_attempt_at)
        with self._transactions() as db:
            due = db.scalar(
                select(type_coerce(func.min(free_at), DateTime())).where(D.status == "pending")
            )
        if due is None:
            return POLL_S
        return max(0.0, min(POLL_S, (due - self._now()).total_seconds()))

    # ------------------------------------------------------------------------ sending

    def dispatch(self) -> int:
        """Claim as many due deliveries as there are free senders and start sending them;
        returns how many."""
        with self._changed:
            free = self._slots - self._busy
        if free <= 0 or self._pool is None:
            return 0
        claimed = self.claim(free)
        for row in claimed:
            with self._changed:
                self._busy += 1
            self._pool.submit(self._deliver, row)
        return len(claimed)

    def _deliver(self, row: Claimed) -> None:
        try:
            self.record(row, self._sender.send(row.url, row.id, row.payload, row.secret))
        except Exception:
            log.exception("webhook delivery %s: its attempt was not recorded", row.id)
        finally:
            with self._changed:
                self._busy -= 1
                self._woken = True
                self._changed.notify_all()

    def claim(self, limit: int) -> list[Claimed]:
        """Take up to ``limit`` due deliveries that no live sender holds, under a lease."""
        now = self._now()
        D = WebhookDeliveryRow
        free = or_(D.lease_until.is_(None), D.lease_until < now)
        due = (
            select(D.id)
            .where(D.status == "pending", D.next_attempt_at <= now, free)
            .order_by(D.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._transactions.begin() as db:
            # Two statements: PostgreSQL may run an ``IN (… LIMIT n FOR UPDATE SKIP LOCKED)``
            # subquery once per row and so claim every due row. The rows selected are locked
            # (PostgreSQL); the UPDATE checks them again (SQLite's select locks nothing).
            ids = db.scalars(due).all()
            if ids:
                ids = (
                    db.execute(
                        update(D)
                        .where(D.id.in_(ids), D.status == "pending", free)
                        .values(lease_owner=self.owner, lease_until=now + self._lease)
                        .returning(D.id),
                        execution_options={"synchronize_session": False},
                    )
                    .scalars()
                    .all()
                )
            if not ids:
                return []
            rows = db.execute(
                select(
                    D.id, WebhookEndpointRow.url, WebhookEndpointRow.secret, D.payload,
                    D.attempts, D.created_at,
                )
                .join(WebhookEndpointRow, WebhookEndpointRow.id == D.endpoint_id)
                .where(D.id.in_(ids))
            ).all()  # fmt: skip
        return [Claimed(*row) for row in rows]

    def record(self, row: Claimed, outcome: Outcome) -> None:
        """Keep the attempt, and end the delivery (delivered, or given up once its retry
        period is over) or schedule its next attempt. A success counts whoever holds the
        lease now; a failure only changes a delivery this process still holds."""
        now = self._now()
        D = WebhookDeliveryRow
        attempts = row.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "lease_owner": None, "lease_until": None}
        guard = [D.id == row.id, D.status == "pending"]
        if outcome.delivered:
            values |= {"status": "delivered", "ended_at": now}
        else:
            guard.append(D.lease_owner == self.owner)
            retry_at = now + self._backoff(attempts)
            if retry_at - row.created_at > self._settings.webhook_retry_period:
                values |= {"status": "failed", "ended_at": now}
            else:
                values["next_attempt_at"] = retry_at
        with self._transactions.begin() as db:
            changed = db.execute(
                update(D).where(*guard).values(**values),
                execution_options={"synchronize_session": False},
            ).rowcount  # type: ignore[attr-defined]
            if changed != 1:
                return  # deleted meanwhile, or another sender took it over
            endpoint_id = db.scalar(select(D.endpoint_id).where(D.id == row.id))
            db.add(
                WebhookAttemptRow(
                    delivery_id=row.id,
                    endpoint_id=endpoint_id,
                    attempted_at=now,
                    status_code=outcome.status_code,
                    latency_ms=outcome.latency_ms,
                    error=outcome.error[:500] if outcome.error else None,
                    response_excerpt=outcome.excerpt,
                )
            )
            ended = {"delivered": "delivered", "failed": "given_up"}
            metrics.webhook_attempt(db, ended.get(str(values.get("status")), "retrying"))
        if values.get("status") == "failed":
            log.warning("webhook delivery %s given up after %d attempts", row.id, attempts)

    def _backoff(self, attempts: int) -> timedelta:
        """The wait after ``attempts`` failed ones: doubling from ``webhook_retry_base`` up
        to ``webhook_retry_max_delay``, drawn from its upper half, so senders that failed
        together do not all come back at once."""
        base = self._settings.webhook_retry_base.total_seconds()
        ceiling = self._settings.webhook_retry_max_delay.total_seconds()
        delay = min(ceiling, base * 2 ** (attempts - 1))
        return timedelta(seconds=delay * random.uniform(0.5, 1.0))

    def prune(self) -> int:
        """Delete ended deliveries (and their attempts) older than ``job_retention``."""
        cutoff = self._now() - self._settings.job_retention
        D = WebhookDeliveryRow
        with self._transactions.begin() as db:
            removed = db.execute(
                delete(D).where(D.status != "pending", D.ended_at < cutoff),
                execution_options={"synchronize_session": False},
            ).rowcount  # type: ignore[attr-defined]
        return int(removed or 0)
