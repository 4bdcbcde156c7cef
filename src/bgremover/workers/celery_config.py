"""The Celery application as both sides configure it: dispatching web processes send to
it, ``bgremover worker`` processes serve it."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .cluster import Channels

TASK = "bgremover.run"
"""The one task: run a ``WorkItem`` (sent as a dict of plain data)."""
VISIBILITY_TIMEOUT_S = 60
"""Redis broker: an unacknowledged message goes to another worker after this long. A run
may outlast it; the duplicate delivery is dropped by its dispatch id."""


def make_app(settings: Settings) -> Any:
    """A Celery app for ``settings``' broker and queue (no result backend: runs report to
    the job store)."""
    from celery import Celery

    broker = settings.broker_url or settings.redis_url
    if not broker:
        raise ValueError(
            "Celery needs a broker: set BGREMOVER_REDIS_URL (and optionally "
            "BGREMOVER_BROKER_URL, e.g. amqp://guest:guest@127.0.0.1:5672//)"
        )
    channels = Channels(settings.redis_namespace)
    app = Celery("bgremover", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=channels.queue,
        task_acks_late=True,  # a message stays the broker's until its run has ended
        task_reject_on_worker_lost=False,  # a lost run is re-queued by the job store
        task_ignore_result=True,
        worker_prefetch_multiplier=1,  # a worker holds no more messages than it runs
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower shows tasks as they run
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_serializer="json",
        accept_content=["json"],
        # A new pool process connects to the database, loads the model and times a warm-up
        # image before it reports up; Celery's 4 s default kills it mid-way on a busy
        # machine, and every replacement after it, so a worker that lost a child never ran
        # again. Minutes: a child that takes longer is stuck (it says why in the log).
        worker_proc_alive_timeout=300.0,
    )
    return app
