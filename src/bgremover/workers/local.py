"""The default executor: a pool of local worker processes, each holding one loaded model.

Processes, not threads, because a run must be killable (a cancel that onnxruntime ignores, a
runaway image) and a crash (OOM killer, segfault in native code) must take down one job, not
the server. They are started with "spawn": onnxruntime's thread pools do not survive a fork.

One monitor thread owns everything that comes back: it waits on every worker's pipe and
process sentinel at once, forwards reports to the sink in order, frees a worker when its run
ends, kills a worker whose run passed its deadline (hung), and replaces a worker that died.
A run whose worker died or was killed so is reported ``Lost``: the job service decides whether
it runs again.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from ..config import Settings
from ..engine.devices import expected
from ..engine.errors import ModelError
from ..engine.models import ModelStore
from ..logs import configured_format
from .base import (
    Calibration,
    Executor,
    Failed,
    Finished,
    Freed,
    Lost,
    Report,
    ReportSink,
    StageProgress,
    Stopped,
    WorkerInfo,
    WorkItem,
)
from .running import run_context
from .worker_process import WARM_UP_ID, Cancel, FromWorker, Ready, Run, Stop, ToWorker, serve

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0
"""How long ``shutdown`` waits for workers to exit on their own before terminating them."""
CANCEL_GRACE_S = 5.0
"""A run that has not stopped this long after its cancel (a stage that cannot be interrupted)
is ended by killing its worker, which is then replaced."""
MAX_RESTART_DELAY_S = 30.0
"""Backoff cap for a worker that keeps dying before its model has loaded."""


class _Worker:
    """One worker process as the parent sees it; the executor's lock guards every field."""

    def __init__(self, name: str, process: BaseProcess, conn: Connection) -> None:
        if process.pid is None:
            raise RuntimeError(f"{name}: the worker process did not start")
        self.name = name
        self.process = process
        self.pid: int = process.pid
        self.conn = conn
        self.ready = False
        """The model has loaded (or failed to load); the worker is serving."""
        self.warming = False
        """It may be timing its warm-up image (ready, no job yet, no calibration heard)."""
        self.closed_pipe = False
        self.running: WorkItem | None = None
        """The run this worker holds, from ``submit`` until its final report."""
        self.cancelled = False
        self.kill_at: float | None = None
        """When to kill the worker because its cancelled run has not stopped."""
        self.deadline: float | None = None
        """When to kill the worker because its run has taken too long (it hangs)."""
        self.hung_after: float | None = None
        """Set when the worker was killed at its deadline: the run's allowed seconds."""
        self.device: str | None = None
        """What runs its model, once it is ready."""

    @property
    def label(self) -> str:
        """As the worker process names itself in its reports and logs."""
        return f"{self.name} (pid {self.pid})"

    def send(self, message: ToWorker) -> None:
        """Send without raising: if the worker is dead, the monitor reports its run."""
        with contextlib.suppress(OSError):
            self.conn.send(message)


class LocalProcessExecutor(Executor):
    """Runs items on ``workers`` local processes (default ``settings.max_concurrent_jobs``)."""

    def __init__(self, settings: Settings, *, workers: int | None = None) -> None:
        self._size = workers if workers is not None else settings.max_concurrent_jobs
        if self._size < 1:
            raise ValueError(f"workers must be at least 1, got {self._size}")
        # Running jobs share the cores instead of each onnxruntime taking all of them.
        threads = settings.intra_op_threads or max(1, (os.cpu_count() or 1) // self._size)
        # Resolved here, once: a named device that is missing stops the start, and auto's
        # fallback to the CPU is said in one line, not once more by every worker.
        self._device = expected(settings.device)
        device = settings.device if self._device.accelerated else "cpu"
        self._settings = settings.model_copy(update={"intra_op_threads": threads, "device": device})
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._workers: dict[str, _Worker] = {}
        self._restart_at: dict[str, float] = {}
        self._early_deaths: dict[str, int] = {}
        self._sink: ReportSink | None = None
        self._started_at = time.time()
        self._closed = False
        self._monitor: threading.Thread | None = None
        # Wakes the monitor when its deadlines change or when it must exit.
        self._wake_reader, self._wake_writer = self._context.Pipe(duplex=False)

    # The Executor contract.

    def start(self, sink: ReportSink) -> None:
        # Fetch and verify the model once here rather than in every worker at the same time;
        # a failure is left to the workers, which report it on every item.
        with contextlib.suppress(ModelError):
            ModelStore(self._settings.models_dir).resolve(
                self._settings.model, self._settings.model_path
            )
        with self._lock:
            if self._sink is not None or self._closed:
                raise RuntimeError("LocalProcessExecutor.start: already started or shut down")
            self._sink = sink
            for index in range(self._size):
                name = f"local-{index + 1}"
                self._workers[name] = self._spawn(name)
        self._monitor = threading.Thread(
            target=self._watch, name="local-executor-monitor", daemon=True
        )
        self._monitor.start()

    def free_slots(self) -> int:
        """Ready workers without a run. One still loading its model is not a slot yet: a
        job sent there would show "processing" while it waits, its ETA counting down for
        nothing; the worker's ``Freed`` report, when it is ready, has the scheduler start a
        job there at once (its warm-up image, if still running, gives way)."""
        with self._lock:
            return sum(1 for worker in self._workers.values() if self._free(worker))

    def submit(self, item: WorkItem) -> None:
        with self._lock:
            if self._sink is None or self._closed:
                raise RuntimeError("LocalProcessExecutor.submit: the executor is not running")
            worker = next((w for w in self._workers.values() if self._free(w)), None)
            if worker is None:
                raise RuntimeError(
                    f"LocalProcessExecutor.submit: no free worker for job {item.job_id}; "
                    "check free_slots() first"
                )
            worker.running = item
            worker.warming = False  # the run stops it
            self._arm_deadline(worker)
            # Sent under the lock so a cancel for this job cannot reach the worker first.
            worker.send(Run(item))
            # A warm-up elsewhere would take cores from this job: it stops too.
            for other in self._workers.values():
                if other.warming:
                    other.warming = False
                    other.send(Cancel(WARM_UP_ID))

    def cancel(self, job_id: str) -> None:
        with self._lock:
            worker = self._worker_running(job_id)
            if worker is None or worker.running is None:
                return
            if not worker.cancelled:
                worker.cancelled = True
                self._arm_kill(worker)
            worker.send(Cancel(worker.running.dispatch_id))

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers.values())
            self._workers.clear()
            self._restart_at.clear()
            for worker in workers:
                worker.send(Stop())
            self._wake()
            self._changed.notify_all()
        monitor = self._monitor
        if monitor is not None and monitor is not threading.current_thread():
            monitor.join()
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process.is_alive():
                log.warning("%s (pid %d) did not stop; terminating it", worker.name, worker.pid)
                worker.process.terminate()
                worker.process.join(1.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        with self._lock:
            self._wake_writer.close()

    # Diagnostics.

    def device(self) -> str:
        """What the ready workers said they run on (a worker whose accelerator failed to
        start fell back to the CPU), else what this process expects them to."""
        with self._lock:
            said = sorted({w.device for w in self._workers.values() if w.device is not None})
        return ", ".join(said) if said else self._device.device

    def worker_pids(self) -> dict[str, int]:
        """Name to pid of every live worker ("local-1": 4242), for tests and status pages."""
        with self._lock:
            return {name: worker.pid for name, worker in self._workers.items()}

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return [
                WorkerInfo(
                    name=name,
                    host=socket.gethostname(),
                    pid=worker.pid,
                    started_at=self._started_at,
                    job_id=worker.running.job_id if worker.running else None,
                )
                for name, worker in sorted(self._workers.items())
            ]

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker has loaded its model (or failed to); False on timeout."""
        with self._changed:
            return self._changed.wait_for(self._all_ready, timeout) and not self._closed

    # Internals. ``_all_ready``, ``_spawn``, ``_worker_running``, ``_arm_kill``, ``_arm_deadline``,
    # ``_wake`` and ``_next_deadline`` expect the lock held; the rest run on the monitor thread.

    @staticmethod
    def _free(worker: _Worker) -> bool:
        return worker.ready and worker.running is None

    def _all_ready(self) -> bool:
        if self._closed:
            return True
        workers = self._workers.values()
        return len(workers) == self._size and all(worker.ready for worker in workers)

    def _spawn(self, name: str) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=serve,
            args=(name, child_end, self._settings, configured_format()),
            name=name,
            daemon=True,
        )
        process.start()
        child_end.close()  # The worker sees EOF, and exits, when this process goes away.
        return _Worker(name, process, parent_end)

    def _worker_running(self, job_id: str) -> _Worker | None:
        return next(
            (
                w
                for w in self._workers.values()
                if w.running is not None and w.running.job_id == job_id
            ),
            None,
        )

    def _arm_kill(self, worker: _Worker) -> None:
        if worker.kill_at is None:
            worker.kill_at = time.monotonic() + CANCEL_GRACE_S
            self._wake()

    def _arm_deadline(self, worker: _Worker) -> None:
        # From the hand-over: a worker that never picks its item up hangs as surely as one
        # that stops midway.
        item = worker.running
        if item is not None and item.deadline_s is not None:
            worker.deadline = time.monotonic() + item.deadline_s
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # Closed by shutdown: nobody left to wake.
            self._wake_writer.send_bytes(b"\0")

    def _watch(self) -> None:
        """The monitor thread: forward reports, free workers, replace the dead."""
        while True:
            with self._lock:
                if self._closed:
                    # Closed here, not in shutdown, which may run inside the sink on this thread.
                    self._wake_reader.close()
                    return
                workers = list(self._workers.values())
                timeout = self._next_deadline()
            pipes = {w.conn: w for w in workers if not w.closed_pipe}
            sentinels = {w.process.sentinel: w for w in workers}
            ready = wait([self._wake_reader, *pipes, *sentinels], timeout)
            for handle in ready:
                if handle is self._wake_reader:
                    while self._wake_reader.poll():
                        self._wake_reader.recv_bytes()
                elif isinstance(handle, Connection):
                    self._drain(pipes[handle])
            # After the pipes, so a dying worker's last reports come before its death.
            for handle in ready:
                if isinstance(handle, int):
                    self._replace(sentinels[handle])
            self._act_on_deadlines()

    def _next_deadline(self) -> float | None:
        deadlines = [*self._restart_at.values()]
        deadlines += [w.kill_at for w in self._workers.values() if w.kill_at is not None]
        deadlines += [w.deadline for w in self._workers.values() if w.deadline is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _drain(self, worker: _Worker) -> None:
        """Handle every message waiting on the worker's pipe, in order; what the sink logs
        about a run names it."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                with self._lock:
                    held = worker.running
                dispatch_id = getattr(message, "dispatch_id", None)
                run = held if held is not None and held.dispatch_id == dispatch_id else None
                with run_context(run, worker.label):
                    self._receive(worker, message)
        except (EOFError, OSError):
            worker.closed_pipe = True  # The process is ending; its sentinel follows.

    def _receive(self, worker: _Worker, message: FromWorker) -> None:
        if isinstance(message, StageProgress) and message.frames:
            self._arm_deadline(worker)  # a clip's frame came: not hung, however long it is
        if isinstance(message, Calibration):
            with self._lock:
                worker.warming = False
        if isinstance(message, Ready):
            with self._lock:
                worker.ready = True
                worker.device = message.device
                if any(w.running is not None for w in self._workers.values()):
                    worker.send(Cancel(WARM_UP_ID))  # no warm-up beside a running job
                else:
                    worker.warming = message.failure is None
                self._changed.notify_all()
            if message.failure is not None:
                log.warning("%s serves failures only: %s", worker.name, message.failure)
            self._emit(Freed(worker.name))
            return
        if isinstance(message, Finished | Failed | Stopped | Lost):
            # Free the worker before the sink hears of it, so the scheduler sees the free slot
            # (a run the store cut short ends Lost, its worker alive and free).
            with self._lock:
                running = worker.running
                if running is not None and running.dispatch_id == message.dispatch_id:
                    worker.running = None
                    worker.cancelled = False
                    worker.kill_at = None
                    worker.deadline = None
        self._emit(message)

    def _replace(self, worker: _Worker) -> None:
        """A worker process ended: report the run it held and start its successor."""
        with self._lock:
            if self._closed or self._workers.get(worker.name) is not worker:
                return  # Shutting down: ``shutdown`` reaps it.
            del self._workers[worker.name]
        self._drain(worker)  # Reports it sent before dying still count.
        worker.process.join()
        exitcode = worker.process.exitcode
        worker.conn.close()
        worker.process.close()
        with self._lock:
            if self._closed:
                return
            held, cancelled = worker.running, worker.cancelled
            if worker.ready:
                self._early_deaths.pop(worker.name, None)
                self._workers[worker.name] = self._spawn(worker.name)
            else:
                # It died loading the model: back off instead of spinning on a broken install.
                deaths = self._early_deaths[worker.name] = (
                    self._early_deaths.get(worker.name, 0) + 1
                )
                delay = min(MAX_RESTART_DELAY_S, 2.0 ** (deaths - 1))
                self._restart_at[worker.name] = time.monotonic() + delay
        how = _describe_exit(exitcode)
        if worker.hung_after is not None:
            how = f"it ran past its {worker.hung_after:.0f} s deadline and was killed"
        with run_context(held, worker.label):
            log.warning("%s (pid %d) died (%s)", worker.name, worker.pid, how)
            if held is None:
                return
            if cancelled:
                self._emit(Stopped(held.job_id, held.dispatch_id))
            else:
                self._emit(Lost(held.job_id, held.dispatch_id, reason=how))

    def _act_on_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            for name, at in list(self._restart_at.items()):
                if at <= now and not self._closed:
                    del self._restart_at[name]
                    self._workers[name] = self._spawn(name)
            stuck = [
                w for w in self._workers.values() if w.kill_at is not None and w.kill_at <= now
            ]
            for worker in stuck:
                worker.kill_at = None
            hung = [
                w for w in self._workers.values() if w.deadline is not None and w.deadline <= now
            ]
            for worker in hung:
                worker.deadline = None
                worker.hung_after = worker.running.deadline_s if worker.running else 0.0
        for worker in hung:
            with run_context(worker.running, worker.label):
                log.warning(
                    "%s (pid %d) ran past its %.0f s deadline; killing it as hung",
                    worker.name,
                    worker.pid,
                    worker.hung_after or 0.0,
                )
            worker.process.kill()
        for worker in stuck:
            with run_context(worker.running, worker.label):
                log.warning(
                    "%s (pid %d) ignored a cancel for %.0f s; killing it",
                    worker.name,
                    worker.pid,
                    CANCEL_GRACE_S,
                )
            worker.process.kill()

    def _emit(self, report: Report) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink(report)
        except Exception:
            log.exception("the report sink failed on %r", report)


def _describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words: "killed by signal SIGKILL; the machine may be ..."."""
    if exitcode is None:
        return "it stopped answering"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = str(-exitcode)
    if -exitcode == signal.SIGKILL:
        return f"killed by signal {name}; the machine may be out of memory"
    return f"killed by signal {name}"
