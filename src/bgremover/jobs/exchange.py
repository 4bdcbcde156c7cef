"""The queue's export and import, in one module: the format ``GET /api/export`` writes and
``POST /api/import`` accepts, and reading and writing it from and to the database
(``export_state``, ``import_state``).

An import is input from anywhere, so it is strict: unknown fields are refused, ids and
content hashes must look like ours, statuses come from the state machine, every string and
list is bounded, and nothing in it is a path. Files are named by the hashes and ids; the
store derives every path from them (a background image travels as its content hash).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session as Db
from sqlalchemy.orm import sessionmaker

from ..config import ERROR_MESSAGE_CHARS
from ..engine.options import OutputFormat, RemoveOptions
from ..engine.stages import Stage
from ..storage.files import HASH_PATTERN, ID_PATTERN, FileStore, background_hash
from . import sequences, transitions
from .eta.clock import size_bucket
from .names import FileName, Name, clean_text
from .schemas import ImportResult
from .states import STATUSES, JobStatus
from .tables import Base, BatchRow, DateTime, JobRow, SessionRow

EXPORT_VERSION = 2
MAX_ROWS = 100_000

Id = Annotated[str, Field(pattern=ID_PATTERN)]
ContentHash = Annotated[str, Field(pattern=HASH_PATTERN)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Pixels = Annotated[int, Field(ge=1, le=1_000_000)]


def _text_only(value: object) -> object:
    """An export writes times as ISO 8601 text, as the schema says; pydantic would read a
    number, or a string of one ("4"), as Unix time, and an import takes nothing the schema
    does not."""
    number = isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    if isinstance(value, int | float) or number:
        raise ValueError("a time is ISO 8601 text with its offset, as an export writes it")
    return value


Stamp = Annotated[AwareDatetime, BeforeValidator(_text_only)]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ExportedSession(_Row):
    id: Id
    name: Name
    started_at: Stamp
    last_activity_at: Stamp


class ExportedBatch(_Row):
    """A batch; its counters and status are recounted from its jobs on import."""

    id: Id
    session_id: Id
    name: Name
    manual: bool = False
    status: JobStatus = "pending"
    created_at: Stamp
    start_time: Stamp | None = None
    end_time: Stamp | None = None


class ExportedJob(_Row):
    id: Id
    batch_id: Id
    file_name: FileName
    file_size: Count
    content_hash: ContentHash
    width: Pixels | None = None
    height: Pixels | None = None
    frames: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    """A clip's frames (its weight in the batch's bar); None for a photo."""
    status: JobStatus
    stage: Stage | None = None
    progress: float = Field(default=0.0, ge=0.0, le=100.0)
    priority: int = Field(default=0, ge=-1000, le=1000)
    queue_order: int = Field(default=0, ge=-(2**62), le=2**62)
    attempt: int = Field(default=1, ge=1, le=10_000)
    retried_from: Id | None = None
    superseded: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    """Output options as ``RemoveOptions`` fields; ``background_image`` is a content hash."""
    created_at: Stamp
    queued_at: Stamp | None = None
    start_time: Stamp | None = None
    end_time: Stamp | None = None
    estimated_time_remaining: float | None = Field(default=None, ge=-1e9, le=1e9)
    error_code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = None
    error_message: Annotated[str, Field(max_length=ERROR_MESSAGE_CHARS)] | None = None
    result_width: Pixels | None = None
    result_height: Pixels | None = None
    result_format: OutputFormat | None = None
    result_bytes: Count | None = None

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, Any]) -> dict[str, Any]:
        background = value.get("background_image")
        if background is not None and not (
            isinstance(background, str) and re.fullmatch(HASH_PATTERN, background)
        ):
            raise ValueError("options.background_image must be a content hash, not a path")
        # The other options must be ones a job can run with (RemoveOptions refuses extras).
        RemoveOptions.model_validate({k: v for k, v in value.items() if k != "background_image"})
        return value

    @field_validator("error_message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return None if value is None else clean_text(value, limit=ERROR_MESSAGE_CHARS)


class QueueState(_Row):
    """A whole queue: sessions, their batches, their jobs (parents before retries)."""

    version: Literal[2]
    exported_at: Stamp | None = None
    sessions: Annotated[list[ExportedSession], Field(max_length=MAX_ROWS)]
    batches: Annotated[list[ExportedBatch], Field(max_length=MAX_ROWS)]
    jobs: Annotated[list[ExportedJob], Field(max_length=MAX_ROWS)]

    @model_validator(mode="after")
    def _unique_ids(self) -> QueueState:
        for kind, rows in (("session", self.sessions), ("batch", self.batches), ("job", self.jobs)):
            ids = [row.id for row in rows]
            if len(set(ids)) != len(ids):
                raise ValueError(f"a {kind} id appears more than once")
        return self


def exported_options(options: dict[str, Any]) -> dict[str, Any]:
    """Stored options for export: the background image by content hash, never a path."""
    if options.get("background_image") is None:
        return options
    return {**options, "background_image": background_hash(options["background_image"])}


_ZERO_COUNTS = {"total_jobs": 0, **{f"{status}_jobs": 0 for status in STATUSES}}


def export_state(transactions: sessionmaker[Db], exported_at: datetime) -> dict[str, Any]:
    """Every session, batch and job as plain JSON rows in the ``QueueState`` shape: files are
    referenced by hash and id, never by path, and which worker ran a job is not included."""
    with transactions() as db:
        jobs = []
        for row in db.scalars(select(JobRow).order_by(JobRow.queue_order)):
            data = _row(row, ExportedJob)
            data["options"] = exported_options(data["options"] or {})
            jobs.append(data)
        return {
            "version": EXPORT_VERSION,
            "exported_at": exported_at.isoformat(),
            "sessions": [_row(r, ExportedSession) for r in db.scalars(select(SessionRow))],
            "batches": [_row(r, ExportedBatch) for r in db.scalars(select(BatchRow))],
            "jobs": jobs,
        }


def import_state(
    transactions: sessionmaker[Db], files: FileStore, state: QueueState, now: datetime
) -> ImportResult:
    """Add the exported rows whose ids are new. Jobs that were running are queued again;
    a job whose files are not in this store is marked failed with the reason. Raises
    ``ValueError`` (nothing is added) when a row names a batch or session that is neither
    in the export nor in this queue."""
    counts = {"sessions": 0, "batches": 0, "jobs": 0, "skipped": 0}
    with transactions.begin() as db:
        for session in state.sessions:
            if db.get(SessionRow, session.id) is not None:
                counts["skipped"] += 1
                continue
            db.add(SessionRow(**_columns(SessionRow, session)))
            counts["sessions"] += 1
        db.flush()
        touched: set[str] = set()
        for batch in state.batches:
            if db.get(BatchRow, batch.id) is not None:
                counts["skipped"] += 1
                continue
            if db.get(SessionRow, batch.session_id) is None:
                raise ValueError(f"batch {batch.id} belongs to an unknown session")
            db.add(BatchRow(**_columns(BatchRow, batch), **_ZERO_COUNTS))
            touched.add(batch.id)
            counts["batches"] += 1
        db.flush()
        jobs = [j for j in state.jobs if db.get(JobRow, j.id) is None]
        counts["skipped"] += len(state.jobs) - len(jobs)
        for job in jobs:  # parents before children for the retried_from link
            if db.get(BatchRow, job.batch_id) is None:
                raise ValueError(f"job {job.id} belongs to an unknown batch")
            db.add(_job_row(files, job, now))
            touched.add(job.batch_id)
            counts["jobs"] += 1
        db.flush()
        for job in jobs:
            if job.retried_from and db.get(JobRow, job.retried_from) is not None:
                child = db.get(JobRow, job.id)
                assert child is not None
                child.retried_from = job.retried_from
        for batch_id in touched:
            transitions.recount(db, batch_id, now)
        sequences.advance_to(db, "queue_order", db.scalar(select(func.max(JobRow.queue_order))))
    return ImportResult(**counts)


def _job_row(files: FileStore, job: ExportedJob, now: datetime) -> JobRow:
    """A job row from an exported one, with every file reference checked in the store."""
    row = JobRow(**_columns(JobRow, job, exclude={"retried_from", "options"}))
    row.queued_at = job.queued_at or job.created_at
    row.size_bucket = size_bucket(row.width, row.height)
    row.lost_runs = 0
    row.media_type = files.image_type(files.original_key(job.content_hash))
    background = job.options.get("background_image")
    row.options = dict(job.options)
    if row.status == "processing":
        row.status, row.stage, row.progress = "pending", None, 0.0
    missing = None
    if row.status == "pending" and row.media_type is None:
        missing = ("original_missing", "the original file was not imported with the queue")
    elif (
        row.status == "pending"
        and background
        and not files.storage.exists(files.background_key(background))
    ):
        missing = ("background_missing", "its background image was not imported with the queue")
    elif row.status == "completed":
        result = files.result_file(row.id, row.result_format)
        if result is not None and files.storage.exists(result):
            row.result_path = result
        else:
            missing = ("result_missing", "its result file was not imported with the queue")
    if missing is not None:
        row.status, row.stage = "failed", None
        row.error_code, row.error_message = missing[0], f"{row.file_name}: {missing[1]}"
        row.end_time = row.end_time or now
    return row


def _row(row: Base, shape: type[BaseModel]) -> dict[str, Any]:
    """A row's columns that the export shape has, as JSON values."""
    out: dict[str, Any] = {}
    for key in shape.model_fields:
        value = getattr(row, key)
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _columns(
    table: type[Base], data: BaseModel, exclude: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Column values from a validated export row (enums as their plain string values)."""
    values = data.model_dump(mode="json", exclude=set(exclude))
    out: dict[str, Any] = {}
    for column in table.__table__.columns:
        if column.key not in values:
            continue
        value = values[column.key]
        if value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        out[column.key] = value
    return out
