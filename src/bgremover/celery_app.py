"""The Celery side of ``bgremover worker``: one task, run by worker processes that each
load the model once and report straight to the job store.

``celery -A bgremover.celery_app flower`` shows the workers (with the same BGREMOVER_*
variables as the workers). A worker process:
- at start, connects to the database (retrying with backoff), loads the model, times a
  warm-up image for the estimates, and beats in Redis as one free slot;
- runs what the job's row says, never what a task message says: a message whose keys or
  options are not the row's (forged by whoever can write to the broker) is refused, logged
  and dropped (``workers.messages``);
- takes each run over in the job store under the run's dispatch id, so a stale or duplicate
  delivery changes nothing; reports stages, percent, completion or failure itself (through
  the job service: the same coalescing and events as one machine), renews the run's lease,
  and stops the inference within a second when any web process cancels the job.
The worker's main process reports a run whose child process died or hung ``Lost``, and
removes a dead child's slot at once; if the whole worker dies, the run's lease (or, before a
worker took it over, its take-over deadline) expires and any web process re-queues it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery import signals
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings, settings_error
from .engine import Cancelled, CancelToken, ModelError, Remover
from .engine.video.probe import open_clip
from .jobs.contract import JobStore
from .jobs.database import unreachable
from .jobs.opening import open_service
from .logs import configure
from .storage import open_storage
from .workers.base import Lost, WorkerInfo, WorkItem
from .workers.celery_config import CHUNK_TASK, TASK, make_app
from .workers.chunks import ChunkPlan, ChunkSharing, MaskMaker, help_with_chunks
from .workers.clips import FrameMasks, clip_limits
from .workers.cluster import Channels, ChildSlots, Listener, WorkerRegistry, redis_client
from .workers.messages import (
    RefusedMessage,
    check_against_row,
    invitation,
    parse,
    parse_invitation,
)
from .workers.removers import Removers, load_remover
from .workers.running import ProgressReports, run_context, run_item
from .workers.scratch import Scratch
from .workers.worker_process import warm_up

log = logging.getLogger("bgremover.worker")

MAX_RETRY_DELAY_S = 30.0


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(settings_error(exc)) from None


settings = _settings()
app = make_app(settings)


def connect_with_retry(settings: Settings) -> JobStore:
    """The job service, once the database answers: a worker started before the database
    (or cut off from it) waits, saying so, instead of exiting."""
    delay = 1.0
    while True:
        try:
            return open_service(settings, follow=False)
        except SQLAlchemyError as exc:
            reason = str(exc).splitlines()[0]
            log.warning("cannot reach the database (%s); retrying in %.0f s", reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)


class Node:
    """One worker process: its model, its job service and its single slot."""

    def __init__(self, settings: Settings, app: Any | None = None) -> None:
        self.settings = settings
        self._app = app
        self.name = f"{socket.gethostname()}/{os.getpid()}"
        self.label = f"{socket.gethostname()} (pid {os.getpid()})"
        channels = self._channels = Channels(settings.redis_namespace)
        self._redis = redis_client(settings)
        self._freed = channels.freed
        self._registry = WorkerRegistry(
            self._redis, channels, settings.worker_heartbeat.total_seconds()
        )
        self.service = connect_with_retry(settings)
        self.service.attach(cancel_running=self.cancel, wake=lambda: None)
        self.storage = open_storage(settings)
        self._scratch = Scratch()
        self.scratch = self._scratch.path
        self._lock = threading.Lock()
        self._running: tuple[WorkItem, CancelToken] | None = None
        self._helping = False
        """Whether the run in ``_running`` is another worker's clip this one helps with."""
        self._started_at = time.time()
        self._stop = threading.Event()

        started = time.monotonic()
        self.remover: Remover | ModelError
        try:
            self.remover = load_remover(settings)
        except ModelError as err:
            log.error("%s: cannot load the model: %s", self.name, err.message)
            self.remover = err  # every run fails with the reason; a restart would too
        else:
            calibration = warm_up(self.name, self.remover)
            if calibration is not None:
                self.service.handle(calibration)
            log.info("%s: model ready in %.1f s", self.name, time.monotonic() - started)

        self.removers = Removers(settings, first=self.remover)
        self._dependencies = self.service.dependencies
        self._listener = Listener(
            self._redis, channels.cancel, self.cancel, self._dependencies
        ).start()
        # A slot from the first beat on; if Redis is away now, the heartbeat keeps trying.
        threading.Thread(target=self._keep_alive, name="heartbeat", daemon=True).start()

    def from_row(self, message: object) -> WorkItem | None:
        """The run a task message names, as its job's row makes it; None (said in the log)
        for a stale dispatch or a message that is malformed or disagrees with the row."""
        try:
            sent = parse(message)
            item = self.service.dispatched(sent.job_id, sent.dispatch_id)
            if item is None:
                log.info("job %s: dispatch %s is stale; dropped", sent.job_id, sent.dispatch_id)
                return None
            check_against_row(sent, item)
        except RefusedMessage as refused:
            log.warning(
                "%s; whoever can write to the broker can queue messages: give Redis or "
                "RabbitMQ a password (see README, Scale-out)", refused,
            )  # fmt: skip
            return None
        return item

    def run(self, item: WorkItem) -> None:
        """Run ``item`` if its dispatch is still the job's and no worker has it yet."""
        token = CancelToken()
        with self._lock:
            self._running = (item, token)
        try:
            with run_context(item, self.label):
                self._run(item, token)
        finally:
            with self._lock:
                self._running = None
            self._say_free()

    def _run(self, item: WorkItem, token: CancelToken) -> None:
        """Take the run over, run it, report its end (inside its ``run_context``)."""
        if not self.service.take_over(item, self.label):
            log.info(
                "job %s: dispatch %s is stale or taken; dropped", item.job_id, item.dispatch_id
            )
            return
        with contextlib.suppress(Exception):  # what it runs, for /api/stats
            self._beat()
        report = run_item(
            item,
            self.removers,
            self.storage,
            self.scratch,
            progress=ProgressReports(item, self.service.handle),
            cancel=token,
            chunks=self._chunk_sharing(),
        )
        self.service.handle(report)

    def _chunk_sharing(self) -> ChunkSharing | None:
        if self._app is None:
            return None
        return ChunkSharing(
            redis=self._redis,
            namespace=self.settings.redis_namespace,
            worker=self.name,
            lease_s=self.settings.lease_duration.total_seconds(),
            chunk_frames=self.settings.clip_chunk_frames,
            idle_workers=self._idle_workers,
            invite=self._invite,
        )

    def _idle_workers(self) -> int:
        return sum(w.job_id is None and w.name != self.name for w in self._registry.live())

    def _invite(self, item: WorkItem, count: int) -> None:
        assert self._app is not None
        for _ in range(count):
            self._app.send_task(CHUNK_TASK, args=[invitation(item)], queue=self._channels.queue)

    def help(self, item: WorkItem) -> None:
        """Help with the chunks of the clip run ``item`` (another worker holds the run)
        while its plan lasts, nothing else waits in the queue and it is not cancelled.
        Meanwhile this process is no free slot, and /api/stats shows it on the clip."""
        if not ChunkPlan.published(self._redis, self.settings.redis_namespace, item.dispatch_id):
            log.info("job %s: its clip needs no more help; invitation dropped", item.job_id)
            return
        token = CancelToken()
        with self._lock:
            self._running = (item, token)
            self._helping = True
        try:
            with run_context(item, self.label):
                with contextlib.suppress(Exception):
                    self._beat()
                self._help(item, token)
        finally:
            with self._lock:
                self._running = None
                self._helping = False
            self._say_free()

    def _help(self, item: WorkItem, token: CancelToken) -> None:
        name = item.original_key.rsplit("/", 1)[-1]
        try:
            remover = self.removers.get(item.options.get("model"))
            with (
                tempfile.TemporaryDirectory(dir=self.scratch) as scratch,
                self.storage.readable(item.original_key, Path(scratch)) as source,
            ):
                folder = Path(scratch)
                info = open_clip(source, clip_limits(self.settings), name=name)
                namespace = self.settings.redis_namespace
                plan = ChunkPlan.find(self._redis, namespace, item.dispatch_id, info.frames)
                if plan is None:
                    log.info("no plan for this clip's frames; stopped helping")
                    return
                masks = FrameMasks(self.storage, name, remover.model_identity, folder)
                make = MaskMaker(remover, source, info, name, masks, item.options.get("model"))
                ran = help_with_chunks(
                    plan, self.name, self.settings.lease_duration.total_seconds(), make, token,
                    lambda: self._stop_helping(item),
                )  # fmt: skip
            log.info("helped with %d chunks of the clip", ran)
        except Cancelled:
            log.info("stopped helping: the clip was cancelled")
        except Exception:  # the chunk is released: its coordinator makes those masks
            log.exception("stopped helping with the clip")

    def _stop_helping(self, item: WorkItem) -> bool:
        """Asked between chunks: whether a pending job waits for a slot (priorities decide
        at chunk boundaries), or the clip's run is no longer ``item`` (its holder was lost
        and the job went back to the queue, or it ended)."""
        queue = self.service.queue()
        if not queue.paused and queue.counts.pending > 0:
            return True
        return self.service.dispatched(item.job_id, item.dispatch_id) is None

    def _say_free(self) -> None:
        """Tell the dispatchers at once (they would otherwise notice within a second)."""
        try:
            self._beat()
            self._redis.publish(self._freed, self.name)
        except Exception as exc:  # the heartbeat says it once Redis is back
            self._dependencies.lost("redis", exc)

    def cancel(self, job_id: str) -> None:
        """Stop the run of ``job_id`` if this process runs it (a broadcast reaches all)."""
        with self._lock:
            running = self._running
        if running is not None and running[0].job_id == job_id:
            running[1].cancel()

    def close(self) -> None:
        self._stop.set()
        self._listener.stop()
        try:
            self._registry.leave(self.name)
        except Exception:
            log.warning("%s: could not leave the worker list", self.name)
        self.service.close()
        self._scratch.close()

    def _beat(self) -> None:
        with self._lock:
            running = self._running
            helping = self._helping
        info = WorkerInfo(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            job_id=running[0].job_id if running else None,
            helps=helping,
        )
        self._registry.beat(info)

    def _keep_alive(self) -> None:
        """Beat in Redis; renew the lease of the run held here (and stop it when its job
        was ended elsewhere: the cancel broadcast may have been missed). Each dependency's
        loss and return is said once (``dependencies``), however long it lasts."""
        beat_s = self.settings.worker_heartbeat.total_seconds()
        renew_s = min(1.0, self.settings.lease_duration.total_seconds() / 3)
        next_beat = next_renewal = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + beat_s
                try:
                    self._beat()
                except Exception as exc:
                    self._dependencies.lost("redis", exc)
                else:
                    self._dependencies.regained("redis")
            if now >= next_renewal:
                next_renewal = now + renew_s
                with self._lock:
                    asks_database = self._running is not None  # nothing held: no query
                try:
                    self.service.retry_unapplied()  # ends of runs the database refused
                    self.service.renew_leases()
                    # After a store failure: probe it, so the next one is announced again.
                    self.service.storage_gate.ready()
                except Exception as exc:
                    if unreachable(exc):
                        self._dependencies.lost("database", exc)
                    else:
                        log.exception("%s: renewing its lease failed", self.name)
                else:
                    if asks_database:
                        self._dependencies.regained("database")
            self._stop.wait(min(beat_s, renew_s))


_node: Node | None = None


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery's worker and each pool process log as every BG Remover process does
    (``BGREMOVER_LOG_FORMAT``); Celery configures nothing itself once this answers."""
    configure(settings.log_format, loglevel or logging.INFO)


def _start_node(**_: Any) -> None:
    global _node
    if _reporter is not None:  # the parent's connections are not this process's to use
        _reporter.database.dispose(close=False)
    # Inference yields the CPU to anything else on the machine (a web process, say).
    with contextlib.suppress(OSError):
        os.nice(settings.worker_niceness)
    _node = Node(settings, app)


def _stop_node(**_: Any) -> None:
    if _node is not None:
        _node.close()


def run(item: dict[str, Any]) -> None:
    """Run the work item a message names (see ``workers.base.WorkItem``) as its job's row
    says."""
    if _node is None:
        raise RuntimeError("the worker process did not start its node")
    trusted = _node.from_row(item)
    if trusted is not None:
        _node.run(trusted)


def chunk(message: dict[str, Any]) -> None:
    """Help with the chunks of the clip run a message names, as its job's row says (a
    stale or malformed invitation is dropped, like a run's message)."""
    if _node is None:
        raise RuntimeError("the worker process did not start its node")
    try:
        job_id, dispatch_id = parse_invitation(message)
    except RefusedMessage as refused:
        log.warning("%s", refused)
        return
    item = _node.service.dispatched(job_id, dispatch_id)
    if item is None:
        log.info("job %s: dispatch %s is stale; invitation dropped", job_id, dispatch_id)
        return
    _node.help(item)


_reporter: JobStore | None = None
_reporter_lock = threading.Lock()


def _report_lost(
    task_id: str, exception: BaseException, args: Any = None, sender: Any = None, **_: Any
) -> None:
    """In the worker's main process: a child died or hung mid-run (kill -9, out of memory,
    past Celery's hard time limit). The run is lost; the job store re-queues it (or fails it
    after too many losses), guarded by its dispatch id."""
    from billiard.exceptions import WorkerLostError
    from celery.exceptions import TimeLimitExceeded

    if not isinstance(exception, WorkerLostError | TimeLimitExceeded) or not args:
        return
    if getattr(sender, "name", TASK) != TASK:
        return  # a helper lost with a chunk: its claim lapses and the chunk re-runs alone
    global _reporter
    try:
        item = parse(args[0])
    except RefusedMessage:
        return  # it was refused, never run
    if isinstance(exception, TimeLimitExceeded):
        reason = (
            f"it ran past its {exception.args[0] if exception.args else ''} s limit and was killed"
        )
    else:
        reason = f"its worker process died ({exception}); the machine may be out of memory"
    with _reporter_lock:
        if _reporter is None:
            _reporter = connect_with_retry(settings)
    _reporter.handle(Lost(item.job_id, item.dispatch_id, reason=reason))


_child_slots: ChildSlots | None = None


def _watch_children(**_: Any) -> None:
    """In the worker's main process, once its pool runs: dead children stop being slots."""
    global _child_slots
    registry = WorkerRegistry(
        redis_client(settings),
        Channels(settings.redis_namespace),
        settings.worker_heartbeat.total_seconds(),
    )
    _child_slots = ChildSlots(registry).start()


def _stop_watching_children(**_: Any) -> None:
    if _child_slots is not None:
        _child_slots.stop()


signals.setup_logging.connect(_setup_logging, weak=False)
signals.worker_ready.connect(_watch_children, weak=False)
signals.worker_shutting_down.connect(_stop_watching_children, weak=False)
signals.worker_process_init.connect(_start_node, weak=False)
signals.worker_process_shutdown.connect(_stop_node, weak=False)
signals.task_failure.connect(_report_lost, weak=False)
app.task(name=TASK)(run)
app.task(name=CHUNK_TASK)(chunk)
