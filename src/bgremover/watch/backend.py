"""The contract between the watch runner and what runs its jobs: this process's own job
system (``local``) or a running ``bgremover serve`` (``remote``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol


@dataclass(frozen=True)
class Update:
    """A job's state as last reported."""

    job_id: str
    status: str
    progress: float = 0.0
    stage: str | None = None
    error: str | None = None
    result_format: str | None = None
    """The format of a completed job's result (``png``, ``webp``, ``jpeg``, ``mask``)."""

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> Update:
        """From a job as the API and the events give it."""
        error, result = job.get("error"), job.get("result")
        return cls(
            job_id=str(job["id"]),
            status=str(job["status"]),
            progress=float(job.get("progress") or 0.0),
            stage=job.get("stage"),
            error=str(error["message"]) if isinstance(error, dict) else None,
            result_format=str(result["format"]) if isinstance(result, dict) else None,
        )


@dataclass(frozen=True)
class Resync:
    """Updates may have been missed (a reconnect, a slow reader): ask for each job's state."""


@dataclass(frozen=True)
class Notice:
    """Something the user should read that is not about one file (a lost connection)."""

    message: str


Report = Callable[[Update | Resync | Notice], None]


class Refused(Exception):
    """The file was not accepted as a job (not an image, too large); the message says why."""


class Backend(Protocol):
    def start(self, report: Report) -> None:
        """Begin reporting job updates (from another thread) through ``report``."""

    def submit(self, file: BinaryIO, name: str) -> str:
        """Queue the content of the open ``file`` (shown as ``name``) as a job; its id, or
        ``Refused``. The runner opens it, so that what is sent is what it checked."""

    def state(self, job_id: str) -> Update | None:
        """The job's current state; None when there is no such job any more."""

    def save_result(self, job_id: str, out: BinaryIO) -> None:
        """Write the completed job's result into ``out`` (the runner's temporary file,
        which replaces the result's name only once this has returned)."""

    def stop(self) -> None:
        """Stop reporting; jobs still queued stay queued."""
