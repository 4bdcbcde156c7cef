"""The queue export format: what ``GET /api/export`` writes and ``POST /api/import`` accepts.

An import is input from anywhere, so it is strict: unknown fields are refused, ids and
content hashes must look like ours, statuses come from the state machine, every string and
list is bounded, and nothing in it is a path. Files are named by the hashes and ids; the
store derives every path from them (a background image travels as its content hash).
"""

from __future__ import annotations

import re
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

from ..config import ERROR_MESSAGE_CHARS
from ..engine.options import OutputFormat, RemoveOptions
from ..engine.stages import Stage
from ..storage.files import HASH_PATTERN, ID_PATTERN, background_hash
from .names import FileName, Name, clean_text
from .states import JobStatus

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
