"""What runs inside one local worker process: load the model once, run items, obey cancels.

The parent (``LocalProcessExecutor``) talks to each worker over one duplex pipe. A listener
thread reads it, so a cancel reaches a running item at once: it sets the item's
``CancelToken``, which terminates a running onnxruntime call. The main thread runs one item
at a time and answers with the ``Report`` messages of ``workers.base``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import tempfile
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import Settings
from ..engine import Cancelled, CancelToken, ModelError, Remover
from ..logs import LogFormat, configure
from ..storage import open_storage
from .base import Calibration, Report, Started, WorkItem
from .removers import Removers, load_remover
from .running import ProgressReports, run_context, run_item

log = logging.getLogger(__name__)

WARM_UP_ID = "warm-up"
"""What a ``Cancel`` names to stop the worker's warm-up: a job started on another worker
needs the cores."""

WARM_UP_SIZE = (1200, 800)
"""A 1-megapixel photo-sized image: the pixel-bound stages scale from it to other sizes."""


@dataclass(frozen=True)
class Run:
    """Parent → worker: run this item (the worker has nothing else running)."""

    item: WorkItem


@dataclass(frozen=True)
class Cancel:
    """Parent → worker: stop this run; by dispatch id so a late cancel cannot hit the next run."""

    dispatch_id: str


@dataclass(frozen=True)
class Stop:
    """Parent → worker: exit once the current run (cancelled now) has ended."""


@dataclass(frozen=True)
class Ready:
    """Worker → parent: the model is loaded, or failed to load and every item will fail. A
    ``Calibration`` follows when the worker timed its warm-up image before any job came."""

    failure: str | None = None
    device: str | None = None
    """What runs the model here (after any fallback of ``auto``); None when it failed."""


ToWorker = Run | Cancel | Stop
FromWorker = Report | Ready


def serve(
    name: str, conn: Connection, settings: Settings, log_format: LogFormat | None = None
) -> None:
    """Entry point of a worker process: serve items from ``conn`` until told to stop; logs
    in ``log_format``, its parent's (None: the parent configured no logging)."""
    if log_format is not None:
        configure(log_format)
    # Ctrl+C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox = _Outbox(conn)
    inbox = _Inbox(conn)
    threading.Thread(target=inbox.listen, name=f"{name}-listener", daemon=True).start()

    # Inference yields the CPU to the web process: pages and live events stay responsive.
    with contextlib.suppress(OSError):
        os.nice(settings.worker_niceness)
    remover: Remover | ModelError
    try:
        remover = load_remover(settings)
    except ModelError as err:
        # Stay up and fail each item with the reason: a restart would only fail the same way.
        log.error("%s: cannot load the model: %s", name, err.message)
        remover = err
    if isinstance(remover, ModelError):
        outbox.send(Ready(failure=remover.message))
    else:
        # Ready before the warm-up, which runs only while no job is running on any worker: the
        # first job of a fresh server starts at once instead of waiting behind (or sharing
        # the cores with) a timed image (issue 20).
        outbox.send(Ready(device=remover.device.device))
        calibration = warm_up(name, remover, cancel=inbox.warm_up)
        if calibration is not None:
            outbox.send(calibration)

    removers = Removers(settings, first=remover)
    label = f"{name} (pid {os.getpid()})"
    storage = open_storage(settings)
    scratch = settings.data_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    while (run := inbox.runs.get()) is not None:
        item, token = run
        with run_context(item, label):
            outbox.send(Started(item.job_id, item.dispatch_id, worker=label))
            progress = ProgressReports(item, outbox.send)
            report = run_item(item, removers, storage, scratch, progress=progress, cancel=token)
            outbox.send(report)
        inbox.forget(item.dispatch_id)


def warm_up(name: str, remover: Remover, cancel: CancelToken | None = None) -> Calibration | None:
    """Time one image through every stage: onnxruntime's first run is slow anyway, and the
    timings give this machine's estimates (at this concurrency) before any job has ended.
    None when it failed or ``cancel`` stopped it (a job came: its timings teach the same)."""
    width, height = WARM_UP_SIZE
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    noise = np.random.default_rng(0).integers(0, 64, (height, width, 3), dtype=np.uint8)
    pixels = np.clip(rows + noise, 0, 255).astype(np.uint8)
    try:
        with tempfile.TemporaryDirectory(prefix="bgremover-warm-up-") as folder:
            source = Path(folder) / "warm-up.jpg"
            Image.fromarray(pixels, "RGB").save(source, quality=90)
            removal = remover.process(
                source, destination=Path(folder) / "warm-up.png", cancel=cancel
            )
    except Cancelled:
        log.info("%s: the warm-up gave way to a job", name)
        return None
    except Exception:  # a warm-up is a nicety: the worker serves without it
        log.exception("%s: the warm-up run failed", name)
        return None
    timings = {stage.value: seconds for stage, seconds in removal.timings.items()}
    return Calibration(worker=name, pixels=width * height, timings=timings)


class _Outbox:
    """Sends to the parent from the main and the inference progress threads, one at a time."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, message: FromWorker) -> None:
        # If the parent is gone, the listener sees EOF and stops this process.
        with self._lock, contextlib.suppress(OSError):
            self._conn.send(message)


class _Inbox:
    """Reads the pipe in its own thread so cancels arrive while the main thread is busy."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._tokens: dict[str, CancelToken] = {}
        self.runs: queue.Queue[tuple[WorkItem, CancelToken] | None] = queue.Queue()
        """Items for the main thread, each with its token; ``None`` means exit."""
        self.warm_up = CancelToken()
        """Stops the warm-up: cancelled when an item, ``Cancel(WARM_UP_ID)`` or the end comes."""
        self._tokens[WARM_UP_ID] = self.warm_up

    def listen(self) -> None:
        try:
            while not isinstance(message := self._conn.recv(), Stop):
                if isinstance(message, Run):
                    # The token exists from receipt, so a cancel that overtakes the start counts.
                    token = CancelToken()
                    with self._lock:
                        self._tokens[message.item.dispatch_id] = token
                    self.runs.put((message.item, token))
                    self.warm_up.cancel()
                elif isinstance(message, Cancel):
                    with self._lock:
                        cancelled = self._tokens.get(message.dispatch_id)
                    if cancelled is not None:
                        cancelled.cancel()
        except (EOFError, OSError):
            pass  # The parent closed the pipe or died: stop as if told to.
        with self._lock:
            tokens = list(self._tokens.values())
        for token in tokens:
            token.cancel()
        self.runs.put(None)

    def forget(self, dispatch_id: str) -> None:
        with self._lock:
            self._tokens.pop(dispatch_id, None)
