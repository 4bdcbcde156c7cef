"""The Celery application as both sides configure it: dispatching web processes send to
it, ``bgremover worker`` processes serve it."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .cluster import Channels

TASK = "bgremover.run"
"""The one task: run a ``WorkItem`` (sent as a dict of plain data)."""
VISIBILITY_TIMEOUT_S = 3600
"""Redis broker: an unacknowledged message goes to another worker after this long. The job
store does not rely on it: a run no worker took over is queued again at its take-over
deadline (``takeover_timeout``, seconds), one whose worker died when its lease expires, and a
message delivered again is dropped by its dispatch id. Long, so that a run in progress is not
delivered twice for nothing."""
LOST_WORKER_WAIT_S = 1.0
"""How long a worker's main process waits for the result of a child that died before it
reports the run lost: runs report to the job store themselves, so there is nothing to wait
for (Celery's default is 10 s)."""


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
        # Acknowledged after the run: a busy worker's prefetch window is then full, so it
        # reserves no message that a free worker elsewhere could start at once.
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # a lost run is re-queued by the job store
        task_ignore_result=True,
        worker_prefetch_multiplier=1,  # a worker holds no more messages than it runs
        worker_lost_wait=LOST_WORKER_WAIT_S,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower shows tasks as they run
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_serializer="json",
        accept_content=["json"],
    )
    return app
