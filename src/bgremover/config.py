"""Every knob of BG Remover in one place.

Values come from keyword arguments, then ``BGREMOVER_*`` environment variables, then the
defaults below (the seed's constants where it had one).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

APP_NAME = "bgremover"


class Settings(BaseSettings):
    """Application settings; build one per process and pass it down (nothing global)."""

    model_config = SettingsConfigDict(env_prefix="BGREMOVER_", extra="ignore")

    # Where things live.
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    cache_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)))

    # The model.
    model: str = "isnet-general-use"
    model_path: Path | None = None
    """An ISNet-compatible ONNX file to use instead of the registered model's cached copy."""
    intra_op_threads: int = Field(default=0, ge=0)
    """onnxruntime threads per inference; 0 lets onnxruntime use every core."""
    worker_niceness: int = Field(default=10, ge=0, le=19)
    """How much lower than the web process worker processes run (``nice``), so pages and
    live events stay responsive while the model runs."""

    # Input limits.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=100_000_000, gt=0)

    # The job system (seed constants).
    database_url: str | None = None
    """SQLAlchemy URL; default: a SQLite file in ``data_dir``. PostgreSQL URLs work too."""
    cleanup_interval: timedelta = timedelta(hours=1)
    auto_group_time_window: timedelta = timedelta(seconds=300)
    max_concurrent_jobs: int = Field(default=2, ge=1)
    notification_duration: timedelta = timedelta(seconds=5)
    progress_update_interval: timedelta = timedelta(milliseconds=100)
    job_retention: timedelta = timedelta(days=7)

    # Runs that go wrong: a lost worker re-queues its job, a hung one is killed at a deadline.
    max_attempts: int = Field(default=3, ge=1)
    """Runs a job may lose to a dead or hung worker before it fails with the reason."""
    lease_duration: timedelta = timedelta(seconds=30)
    """How long a claimed run stays its process's without a renewal; after that any process
    may re-queue it (a crashed server's jobs come back at the latest this long after)."""
    run_timeout_min: timedelta = timedelta(minutes=2)
    run_timeout_factor: float = Field(default=10.0, gt=0)
    """A run is killed as hung after ``run_timeout_factor`` times its expected duration, and
    never before ``run_timeout_min``."""

    # The web app.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    token: str | None = None
    """Access token; required when ``host`` is not a loopback address."""
    dev: bool = False
    """Development mode: shows the UI's test panel."""
    max_files_per_upload: int = Field(default=1000, ge=1)

    @property
    def models_dir(self) -> Path:
        """Downloaded model files, verified by hash before every load."""
        return self.cache_dir / "models"
