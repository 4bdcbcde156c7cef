"""Every knob of BG Remover in one place.

Values come from keyword arguments, then ``BGREMOVER_*`` environment variables, then the
defaults below (the seed's constants where it had one).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .engine.devices import Device

APP_NAME = "bgremover"
ENV_PREFIX = "BGREMOVER_"

ERROR_MESSAGE_CHARS = 2000
"""The longest error message a job keeps (its column, worker reports, imported queues)."""


def _seconds(value: Any) -> Any:
    """Plain numbers are seconds (``30``, ``1.5``); other text goes to pydantic, which reads
    ISO 8601 (``PT30S``) and ``[D days, ]HH:MM:SS``."""
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value.strip()))
        except ValueError:
            return value
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds)]


class Settings(BaseSettings):
    """Application settings; build one per process and pass it down (nothing global)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Where things live.
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    cache_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)))

    # The model.
    model: str = "isnet-general-use"
    """The model a job runs when it names none: built-in or added (``bgremover models``)."""
    model_path: Path | None = None
    """An ISNet-compatible ONNX file to use instead of the registered model's cached copy."""
    model_memory: int = Field(default=1_500_000_000, ge=0)
    """Bytes of model weights (the files onnxruntime loads) one worker process keeps loaded
    for jobs that chose different models; past it the least recently used is let go (the
    one a job needs now always loads). Running takes about four times the weights again
    (ISNet: 176 MB of fp32 weights, 0.75 GB at its peak), so budget the machine's memory
    as processes × (this + that)."""
    device: Device = "auto"
    """``auto`` takes the best accelerator the installed onnxruntime offers, else the CPU
    (saying so in one log line). A device named here that is missing or fails to start
    stops the command with what there is and the fix (``pip install 'bgremover[gpu]'``)."""
    batch_size: int | None = Field(default=None, ge=1)
    """Images one model run takes; default 4 on an accelerator and 1 on the CPU (the fp32
    copy the CPU runs takes one at a time)."""
    intra_op_threads: int = Field(default=0, ge=0)
    """onnxruntime threads per inference; 0 lets onnxruntime use every core."""
    lean_model_memory: bool = True
    """Keep less of what loading and running the model needed (engine/inference.py): a
    worker then peaks at about 0.95 GB on a 12 MP photo instead of 1.6 GB, as fast.
    False is the old behaviour, for comparison (bench/jobs_bench.py ``--only memory``)."""
    worker_niceness: int = Field(default=10, ge=0, le=19)
    """How much lower than the web process worker processes run (``nice``), so pages and
    live events stay responsive while the model runs."""

    # Input limits.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    """One uploaded file; a batch request may hold ``max_files_per_upload`` of them."""
    max_image_pixels: int = Field(default=100_000_000, gt=0)
    """Also each frame of a clip."""
    max_video_seconds: float = Field(default=600.0, gt=0)
    """A clip's length (MP4, MOV, WebM, MKV, animated GIF or WebP)."""
    max_video_frames: int = Field(default=18_000, gt=0)
    """A clip's frames: 10 minutes at 30 fps. Each frame costs about a photo of its size."""
    clip_chunk_frames: int = Field(default=25, ge=1)
    """In the cluster, a clip of more frames than this is split into chunks of this many
    that idle Celery workers help with (each frame's mask through the model), before the
    worker holding the job composites and encodes it once."""
    max_import_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    """A ``POST /api/import`` body. An export weighs about 850 bytes a job (8.5 MB for
    10,000, bench/import_bench.py), so the default takes about 39,000 jobs; importing
    one costs the server about 8 times its size in memory while it runs."""

    # The job system (seed constants).
    database_url: str | None = None
    """SQLAlchemy URL; default: a SQLite file in ``data_dir``. PostgreSQL URLs work too."""
    cleanup_interval: Duration = timedelta(hours=1)
    auto_group_time_window: Duration = timedelta(seconds=300)
    max_concurrent_jobs: int = Field(default=2, ge=1)
    notification_duration: Duration = timedelta(seconds=5)
    progress_update_interval: Duration = timedelta(milliseconds=100)
    batch_progress_interval: Duration = timedelta(seconds=2)
    """How often the scheduler publishes the snapshot of every active batch and session:
    their percent moves with time (the queue and the warm-up included), so clients that
    only read the event stream see it move between the batch's own events."""
    job_retention: Duration = timedelta(days=7)

    # Runs that go wrong: a lost worker re-queues its job, a hung one is killed at a deadline.
    max_attempts: int = Field(default=3, ge=1)
    """Runs a job may lose to a dead or hung worker before it fails with the reason."""
    lease_duration: Duration = timedelta(seconds=30)
    """How long a claimed run stays its process's without a renewal; after that any process
    may re-queue it (a crashed server's jobs come back at the latest this long after)."""
    takeover_timeout: Duration = timedelta(seconds=15)
    """How long a run sent to Celery may wait for a worker to take it over; after that any
    process queues it again, uncounted (its message was lost with a dead worker or a broker
    restart), and the message, should it still arrive, is dropped by its dispatch id."""
    outage_backoff: Duration = timedelta(seconds=2)
    """How long a job whose run the store cut short (a full or failing disk, an S3 server
    that does not answer) waits before it runs again; doubled for each further
    loss, up to a minute. Such a loss counts toward ``max_attempts`` like a lost worker."""
    run_timeout_min: Duration = timedelta(minutes=2)
    run_timeout_factor: float = Field(default=10.0, gt=0)
    """A run is killed as hung after ``run_timeout_factor`` times its expected duration, and
    never before ``run_timeout_min``."""

    # Scale-out (one machine needs none of these).
    redis_url: str | None = None
    """``redis://:password@host:6379/0`` (``rediss://`` across machines): when set, events go
    through a Redis stream shared by every web process, and jobs run on Celery workers
    (``bgremover worker``), not in ``serve``."""
    broker_url: str | None = None
    """Celery's broker; default ``redis_url``. ``amqp://user:pass@host:5672//`` (RabbitMQ;
    ``amqps://`` across machines) works too."""
    storage_url: str | None = None
    """Originals and results: ``file:///path`` (default: ``data_dir``) or
    ``s3://bucket/prefix``, which web processes and workers on other machines share."""
    s3_endpoint_url: str | None = None
    """An S3-compatible server other than AWS (MinIO, Ceph, …): ``http://host:9000``."""
    redis_namespace: str = Field(default="bgremover", pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    """Prefix of this deployment's Redis keys, channels and Celery queue, so several
    deployments (or test runs) on one Redis keep apart; no security boundary: each can read
    and write the others' keys (give untrusting deployments a Redis or Redis user each)."""
    worker_heartbeat: Duration = timedelta(seconds=2)
    """How often a Celery worker process says it is alive; one silent for three of these no
    longer counts as a slot."""

    # Webhooks (web processes send them; see webhooks/).
    webhook_allow_private: bool = False
    """Let webhooks go to loopback and private addresses (10/8, 172.16/12, 192.168/16,
    100.64/10, fc00::/7): receivers on this machine or the local network. Off, a webhook may
    only reach public addresses. Link-local (cloud metadata), multicast, reserved and
    unspecified addresses are refused either way."""
    webhook_retry_period: Duration = timedelta(hours=24)
    """How long a delivery is retried (from the event) before it is given up."""
    webhook_retry_base: Duration = timedelta(seconds=5)
    """The wait after a delivery's first failed attempt; doubled after each further one (with
    jitter), up to ``webhook_retry_max_delay``."""
    webhook_retry_max_delay: Duration = timedelta(hours=1)
    webhook_connect_timeout: Duration = timedelta(seconds=3)
    webhook_timeout: Duration = timedelta(seconds=10)
    """The most one attempt may take, redirects included (connect, send, answer)."""
    webhook_senders: int = Field(default=4, ge=0, le=64)
    """Deliveries this process sends at once; 0: this process sends none (others that share
    the database do)."""

    # Watch folders.
    watch_settle: Duration = timedelta(seconds=2)
    """A file in a watch folder that no process is known to be writing (there are no close
    events for it: moved in, or a system without them) is taken once unchanged this long."""

    # Operating it.
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line for a log shipper (``logs.py``). ``text``, for
    people, is the default on a terminal and off it too: the same command writes the same
    lines under systemd, Docker or a pipe to ``grep`` as in a terminal, and an upgrade
    changes nobody's log format unasked."""

    # The web app.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    token: str | None = None
    """Access token; required when ``host`` is not a loopback address, and refused when weak
    (``web/tokens.py``; ``bgremover token`` makes a good one)."""
    login_lifetime: Duration = timedelta(hours=12)
    """How long a browser login (the cookie ``POST /api/login`` sets) lasts."""
    auth_max_failures: int = Field(default=10, ge=1)
    auth_failure_window: Duration = timedelta(minutes=1)
    """A client address that sent ``auth_max_failures`` wrong tokens within
    ``auth_failure_window`` gets 429 until the oldest of them is that long ago."""
    dev: bool = False
    """Development mode: shows the UI's test panel."""
    max_files_per_upload: int = Field(default=1000, ge=1)
    thumbnail_cache_bytes: int = Field(default=500_000_000, ge=0)
    """Most bytes of cached thumbnails in ``data_dir/thumbnails``; past it the least recently
    used are deleted (they are rendered again when asked for). 0 keeps none."""
    # Mask reuse (jobs/masks.py).
    mask_cache_bytes: int = Field(default=2_000_000_000, ge=0)
    """Most bytes of the model's masks kept in the store, so a derive, a retry with other
    output options or a second upload of a photo skips the model. A 12 MP mask is a PNG of
    about 0.6 MB (bench/cache_bench.py), so the default keeps some 3,500 such photos' masks;
    past it the least recently used are deleted (their photos run the model again). 0 keeps
    none."""
    thumbnail_renders: int = Field(default=2, ge=1)
    """Thumbnails rendered at once in a web process: each holds its source decoded (a
    36 MP PNG is 144 MB), so this bounds the memory thumbnails take."""
    thumbnail_wait: Duration = timedelta(seconds=30)
    """How long a thumbnail request waits for a render slot before it gets 503 with
    Retry-After; a page of new cards waits its turn rather than showing broken images."""
    max_presets: int = Field(default=200, ge=1)
    """Saved presets at most; saving a new one beyond this is refused (409)."""
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Host names (comma-separated) the server answers besides localhost names, loopback
    addresses and ``host``; ``*`` answers any. Guards against DNS rebinding."""

    # Slow or greedy clients (the HTTP server's limits).
    header_timeout: Duration = timedelta(seconds=10)
    """A request's line and headers must arrive within this long."""
    body_timeout: Duration = timedelta(seconds=30)
    """A request body that stops arriving for this long is dropped."""
    keep_alive_timeout: Duration = timedelta(seconds=5)
    max_connections: int = Field(default=200, ge=1)
    """Open connections (event streams included) before new requests get 503."""
    max_event_streams: int | None = Field(default=None, ge=1)
    """Live event streams (``/api/events``) open at once, from all clients together; more get
    503. Must be below ``max_connections`` so pages and the API keep room; default half
    of it."""
    max_event_streams_per_client: int = Field(default=10, ge=1)
    """Live event streams one client address may hold (a browser tab holds one); more get
    429."""

    @field_validator("max_event_streams")
    @classmethod
    def _room_for_requests(cls, value: int | None, info: ValidationInfo) -> int | None:
        connections = info.data.get("max_connections")
        if value is not None and connections is not None and value >= connections:
            raise ValueError(
                f"must be below {ENV_PREFIX}MAX_CONNECTIONS ({connections}), so that pages "
                "and API requests still get a connection while every stream is open"
            )
        return value

    @property
    def event_stream_limit(self) -> int:
        """``max_event_streams``, or half of ``max_connections`` when unset."""
        return self.max_event_streams or max(1, self.max_connections // 2)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @property
    def models_dir(self) -> Path:
        """Downloaded model files, verified by hash before every load."""
        return self.cache_dir / "models"


def settings_error(exc: ValidationError) -> str:
    """One line naming each bad ``BGREMOVER_*`` value, what was wrong and what works."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        known = Settings.model_fields.get(field)
        is_duration = known is not None and known.annotation is timedelta
        hint = " (give seconds, e.g. 30, or ISO 8601 such as PT5M)" if is_duration else ""
        given = error.get("input")
        shown = f"={given!r}" if isinstance(given, (str, int, float)) else ""
        parts.append(f"{ENV_PREFIX}{field.upper()}{shown}: {error['msg']}{hint}")
    return "invalid setting: " + "; ".join(parts)
