"""The executor contract: how the job system hands work to workers and hears back.

The job service never assumes a worker shares its process or machine: it sends a ``WorkItem``
(plain data: storage keys and JSON options) and receives ``Report`` messages through a sink that may
be called from any thread. The local process pool implements this today; a Celery executor
implements the same contract for scale-out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkItem:
    """One run of one job."""

    job_id: str
    dispatch_id: str
    """Unique per run; every report carries it so a stale run's reports can be told apart."""
    original_key: str
    """Storage key of the original image (workers get keys, never paths: they may run on
    another machine)."""
    result_key: str
    """Storage key to write the result under."""
    background_key: str | None = None
    """Storage key of the background image to composite onto, if any."""
    options: dict[str, Any] = field(default_factory=dict)
    """``RemoveOptions`` as JSON, without ``background_image`` (see ``background_key``)."""
    deadline_s: float | None = None
    """Seconds the run may take from its start; past that its worker counts as hung: it is
    killed and the run reported ``Lost``."""
    batch_id: str | None = None
    """The job's batch, for the run's log lines."""
    clip: bool = False
    """The original may be a clip (``engine.video.may_be_clip``): a clip's deadline counts
    from its last frame, so an executor that cannot re-arm one (Celery's ``time_limit``,
    fixed when the task is sent) sets none for it."""


@dataclass(frozen=True)
class Started:
    job_id: str
    dispatch_id: str
    worker: str
    """Who runs it, for people: "local-1 (pid 4242)"."""


@dataclass(frozen=True)
class StageProgress:
    job_id: str
    dispatch_id: str
    stage: str
    """A ``Stage`` value: "Loading", "AI model", ..."""
    fraction: float
    """Share of that stage done, 0-1."""
    sent_at: float
    """``time.time()`` in the worker when reported, for latency measurement."""
    frames: int | None = None
    """A clip's frames in all: ``stage`` then reads "frame n of N" and ``fraction`` is the
    share of frames done (``workers.clips``)."""
    frame_seconds: float | None = None
    """A clip's measured seconds per frame in this run, once a few frames are done."""


@dataclass(frozen=True)
class Finished:
    job_id: str
    dispatch_id: str
    width: int
    height: int
    format: str
    bytes: int
    timings: dict[str, float]
    """Seconds per stage (``Stage`` value to seconds), for ETA estimates."""
    mask_key: str | None = None
    """Where the model's mask of this original is kept, when the run stored or reused it."""
    mask_bytes: int = 0
    """That mask's size."""
    mask_reused: bool = False
    """Whether the run reused the kept mask instead of running the model."""
    model: str | None = None
    """The model that made the mask (the job's choice, or the worker's default)."""
    model_sha256: str | None = None
    """The sha256 of that model's file."""
    frames_run: int | None = None
    """A clip's frames the model ran on in this run (the others came from checkpoints)."""


@dataclass(frozen=True)
class Failed:
    job_id: str
    dispatch_id: str
    code: str
    message: str


@dataclass(frozen=True)
class Stopped:
    """The run ended because it was cancelled (by the user, or by a shutdown)."""

    job_id: str
    dispatch_id: str


@dataclass(frozen=True)
class Lost:
    """The run's worker died or hung, or what it needed failed under it (a full disk, the
    storage away): not the image's fault as far as anyone can tell."""

    job_id: str
    dispatch_id: str
    reason: str
    """In words, for people: "killed by signal SIGKILL; the machine may be out of memory"."""
    dependency: str | None = None
    """What failed, when it was not the worker ("storage"). The job then waits a while
    before it runs again, and dispatch waits for the storage to take writes."""


@dataclass(frozen=True)
class Calibration:
    """Not about a run: a worker timed a warm-up image of ``pixels`` at start, per stage."""

    worker: str
    pixels: int
    timings: dict[str, float]


@dataclass(frozen=True)
class Freed:
    """Not about a run: a worker slot came free (a remote one, or a local worker that has
    loaded its model), so the scheduler may start more now instead of at its next round."""

    worker: str


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as the cluster sees it."""

    name: str
    """"host/pid": unique while the process lives."""
    host: str
    pid: int
    started_at: float
    job_id: str | None = None
    """The job it runs now, if any."""
    helps: bool = False
    """It helps with the chunks of ``job_id``, a clip another worker holds: no free slot,
    though the job counts as one running job."""


MAX_CHUNKS = 16
"""The most chunks a clip is shared out in. A helper decodes its clip from the first frame up
to its chunk (frames are numbered in decode order, which a seek by time cannot give), so a
clip in K chunks is decoded about K/2 times over in all: 16 chunks bound that to 8 decodes
of each frame, where chunks of 25 frames would decode a 10-minute clip 360 times over."""


def chunk_size(frames: int, setting: int) -> int:
    """Frames per chunk of a clip of ``frames`` in the cluster: ``setting``
    (``BGREMOVER_CLIP_CHUNK_FRAMES``), or more for a long clip, so that it has at most
    ``MAX_CHUNKS``."""
    return max(setting, -(-frames // MAX_CHUNKS))


RunEnd = Finished | Failed | Stopped | Lost
"""How a run ended: exactly one of these per run."""
RunReport = Started | StageProgress | RunEnd
Report = RunReport | Calibration | Freed
ReportSink = Callable[[Report], None]


class Executor(ABC):
    """Runs work items somewhere and reports what happens to them."""

    @abstractmethod
    def start(self, sink: ReportSink) -> None:
        """Begin accepting work. Reports go to ``sink``, called from any thread, in order
        per run. Every submitted run ends with exactly one Finished, Failed, Stopped or
        Lost (its worker died, or ran past the item's ``deadline_s`` and was killed)."""

    @abstractmethod
    def free_slots(self) -> int:
        """How many more items can start now; the scheduler submits at most this many."""

    def shared_slots(self) -> int | None:
        """Slots shared with every other process that dispatches to the same workers (the
        job store then counts the runs of all of them), or None when ``free_slots`` is
        this process's own."""
        return None

    remote = False
    """Whether workers take runs over and report to the job store themselves, so the
    dispatching process holds no run once it is handed out."""

    @abstractmethod
    def submit(self, item: WorkItem) -> None:
        """Start ``item``. Never blocks on the work itself."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop the job's run if one is running (its inference within a second) and free
        the slot; it then reports Stopped. A no-op for a job that is not running here."""

    def workers(self) -> list[WorkerInfo]:
        """The worker processes serving this executor and what each runs, for people."""
        return []

    def device(self) -> str:
        """What runs the model, for people: a device name ("cuda", "cpu", …), or the
        configured setting where workers elsewhere each resolve their own ("auto")."""
        return "unknown"

    def health(self) -> dict[str, str]:
        """What this executor depends on and whether it answers ("ok" or the problem)."""
        return {}

    def readiness(self) -> dict[str, str]:
        """The part of ``health`` without which the process can start and follow no run
        (so it should get no requests), checked cheaply."""
        return {}

    @abstractmethod
    def shutdown(self) -> None:
        """Stop every worker. Runs still going are cancelled (they may report Stopped); the
        job service has put their jobs back in the queue before calling this."""
