"""The Celery application as both sides configure it: dispatching web processes send to
it, ``bgremover worker`` processes serve it."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .cluster import Channels

TASK = "bgremover.run"
"""The task that runs a ``WorkItem`` (sent as a dict of plain data)."""
CHUNK_TASK = "bgremover.chunk"
"""An invitation to help with a running clip's chunks: names the run (job and dispatch id)
and nothing else; the helper reads the rest from the job's row (``workers.chunks``)."""
REDIS_TRANSPORT = {"ack_emulation": False}
"""Redis broker: a message is the worker's once delivered; no unacknowledged set, no
redelivery after a visibility timeout. The job store does not need them: a run no worker took
over is queued again at its take-over deadline (``takeover_timeout``), one whose worker died
when its lease expires or its death is reported, and a late or repeated message is dropped
by its dispatch id. Without it a worker also survives a broker restart with runs in flight
(kombu's restore of the unacknowledged set on the lost connection raised AttributeError and
stopped the whole worker: celery/kombu#970, #582)."""
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
        # reserves no message that a free worker elsewhere could start at once. (With the
        # Redis broker, kombu counts the window in the worker's memory, ack_emulation or not.)
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # a lost run is re-queued by the job store
        task_ignore_result=True,
        worker_prefetch_multiplier=1,  # a worker holds no more messages than it runs
        worker_lost_wait=LOST_WORKER_WAIT_S,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # Flower shows tasks as they run
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=REDIS_TRANSPORT,
        task_serializer="json",
        accept_content=["json"],
        # A new pool process connects to the database, loads the model and times a warm-up
        # image before it reports up; Celery's 4 s default kills it mid-way on a busy
        # machine, and every replacement after it, so a worker that lost a child never ran
        # again. Minutes: a child that takes longer is stuck (it says why in the log).
        worker_proc_alive_timeout=300.0,
    )
    return app
