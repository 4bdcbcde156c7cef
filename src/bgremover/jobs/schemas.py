"""The public shapes of jobs, batches, sessions and operation results (API and events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .states import JobStatus

EtaReason = Literal["paused"]
"""Why an estimate is None though work is left: "paused" (the queue or the batch is held, so
no time would be right)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobError(_Model):
    code: str
    message: str


class ResultInfo(_Model):
    width: int
    height: int
    format: str
    bytes: int
    model: str | None = None
    """The model that made the mask (None for results from before models were recorded)."""
    model_sha256: str | None = None
    """The sha256 of that model's file: which weights exactly."""


class Job(_Model):
    id: str
    batch_id: str
    session_id: str
    file_name: str
    file_size: int
    media_type: str | None
    width: int | None
    height: int | None
    status: JobStatus
    stage: str | None
    progress: float
    priority: int
    attempt: int
    retried_from: str | None
    superseded: bool
    """A later attempt (a retry) replaced this one."""
    options: dict[str, Any]
    created_at: datetime
    queued_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    estimated_time_remaining: float | None
    """Seconds of processing left (queue waiting not included)."""
    eta_at: datetime | None = None
    """When the estimate was made: a client counts it down from there between events."""
    eta_reason: EtaReason | None = None
    """Why ``estimated_time_remaining`` is None while the job waits."""
    error: JobError | None
    worker: str | None
    result: ResultInfo | None


PROGRESS = (
    "Percent of the expected wall time elapsed (0-100), the same for every client: the time "
    "since the jobs were uploaded (the queue and the workers' warm-up included) over that "
    "plus the ETA, never below the share of the work done (each image priced by its size). "
    "It never goes back, except when work is added: an upload into the batch or a derived "
    "job lowers it, and a retry of an ended batch goes on from the share of the time it "
    "was active (a retry while it runs keeps it). Below 100 until the end. Between events "
    "a client may draw it on toward 100 at the pace the ETA implies: the next event "
    "follows the same line."
)


class Counts(_Model):
    total: int = 0
    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class Batch(_Model):
    id: str
    name: str
    session_id: str
    manual: bool
    status: JobStatus
    progress: float = Field(description=PROGRESS)
    counts: Counts
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    duration: float | None
    """Seconds from the first job starting to the last one ending (or now)."""
    estimated_time_remaining: float | None
    """Seconds until the batch's last job is expected to finish, queue included."""
    eta_at: datetime | None = None
    eta_reason: EtaReason | None = None
    """Why ``estimated_time_remaining`` is None while jobs are left."""
    paused: bool = False
    """Its pending jobs wait until it is resumed; running ones finish."""
    work_seconds: float = 0.0
    """Expected processing time of all its jobs, each priced by its image size."""
    work_done_seconds: float = 0.0
    """How much of ``work_seconds`` is done: their ratio is the floor of ``progress``,
    which counts the time waited in the queue and for the workers too."""


class Session(_Model):
    id: str
    name: str
    started_at: datetime
    last_activity_at: datetime
    status: JobStatus
    progress: float = Field(description=PROGRESS)
    counts: Counts
    batch_ids: list[str]
    duration: float | None
    estimated_time_remaining: float | None
    eta_at: datetime | None = None
    eta_reason: EtaReason | None = None


class Queue(_Model):
    """The queue as a whole (``GET /api/queue`` and the ``queue.updated`` event)."""

    paused: bool
    """No pending job starts while it is; running ones finish."""
    paused_by: str | None
    """Who paused it: "token", "login:<key prefix>", "local" (a browser on this machine
    without a token), or "cli"."""
    paused_at: datetime | None
    paused_batches: list[str]
    """Ids of the unfinished batches paused on their own."""
    counts: Counts
    """Jobs by status (retried attempts counted once)."""


class Upload(_Model):
    """One file handed to ``create_batch``: already on disk, not yet content-addressed."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    file_name: str
    path: str
    """A temporary file the service moves into the originals store."""


class Callback(_Model):
    """The webhook endpoint an upload's ``callback_url`` made for its batch. Its ``secret``
    signs every delivery and is shown only here."""

    id: str
    url: str
    events: list[str]
    secret: str


class BatchCreated(_Model):
    batch: Batch
    jobs: list[Job]
    callback: Callback | None = None


class CancelResult(_Model):
    cancelled: list[str]
    """Ids of the jobs this call cancelled."""


class RetryResult(_Model):
    jobs: list[Job]
    """The new attempts, pending."""


class CleanupResult(_Model):
    jobs_deleted: int
    files_deleted: int


class ImportResult(_Model):
    sessions: int
    batches: int
    jobs: int
    skipped: int
    """Rows whose id already existed."""


class ActiveSnapshot(_Model):
    """The live queue for a client that (re)connects, consistent with events after ``seq``."""

    seq: int
    jobs: list[Job]
    batches: list[Batch]
    sessions: list[Session]
    notifications: list[dict[str, Any]] = []
    """The latest notifications with their ``seq``: a client resuming from an older seq shows
    those it missed."""
    health: dict[str, Any] = {}
    """Dependencies as the last ``health.updated`` events said ("storage": {"ok", "since",
    "error"}), so a client connecting during an outage shows it too."""
    queue: Queue | None = None
    """The queue's state, as ``queue.updated`` says it (paused or not)."""


class EtaAccuracy(_Model):
    """How the estimate made when each job started compared with how long it took."""

    jobs: int
    """Completed jobs measured (the most recent, at most 100)."""
    median_error: float
    """Median of |predicted − actual| / actual: 0.1 means typically 10 % off."""
    mean_bias: float
    """Mean of (predicted − actual) / actual: negative when estimates run short."""


class WorkerStatus(_Model):
    """One worker process and the job it runs."""

    name: str
    host: str
    pid: int
    since: datetime
    job_id: str | None = None
    file_name: str | None = None
    helps: bool = False
    """It makes masks for a chunk of ``job_id``, a clip another worker holds."""


class Stats(_Model):
    jobs: dict[str, int]
    """Jobs per status (retried attempts counted once)."""
    batches: int
    sessions: int
    completed_last_hour: int
    expected_seconds_per_image: float
    max_concurrent_jobs: int
    device: str = "unknown"
    """What runs the model (``BGREMOVER_DEVICE`` resolved: "cuda", "cpu", …)."""
    eta_accuracy: EtaAccuracy | None = None
    """None until a job has completed with an estimate."""
    workers: list[WorkerStatus] = []
    """The worker processes (local, or every Celery worker of the cluster)."""
