"""Logging for every process of BG Remover, set up in one place.

``configure`` gives the root logger one stderr handler that every logger reaches: ours,
uvicorn's (error and access logs), Celery's, and any library's warnings. It is called by
``bgremover serve`` (through ``cli``), by each local worker process with its parent's
format, and by ``bgremover worker`` through Celery's ``setup_logging`` signal (Celery then
leaves logging alone, and its pool processes inherit the handler).

``BGREMOVER_LOG_FORMAT=json`` writes one JSON object per line (``timestamp`` in ISO 8601
UTC, ``level``, ``logger``, ``message``, ``pid``, ``exception`` as one string) for a log
shipper; ``text`` (the default) writes lines for people. Lines written inside ``bound``
carry its fields: a run binds its job, batch and dispatch ids and its worker
(``workers.running.run_context``), so one run's lines can be gathered from every process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["text", "json"]

SHOWN_AT_INFO = ("bgremover", "uvicorn", "celery")
"""Loggers whose INFO lines show (a dependency lost and back, runs, requests, Celery's
tasks); every other library shows warnings and errors only."""


_RUN_ORDER = {"job_id": 0, "batch_id": 1, "dispatch_id": 2, "worker": 3}
"""How a text line lists a run's fields (bound fields come in no fixed order)."""


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler ``configure`` installs; it remembers its format for child processes."""

    def __init__(self, log_format: LogFormat) -> None:
        super().__init__(sys.stderr)
        self.log_format: LogFormat = log_format
        self.setFormatter(_formatter(log_format))


def configure(log_format: LogFormat, level: int | str = logging.INFO) -> None:
    """Send every logger's records to stderr in ``log_format``, replacing what was there
    (uvicorn's and Celery's own handlers included, so no line is written twice)."""
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(_Handler(log_format))
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python's warnings (Celery's as root, say) are lines too
    for name in SHOWN_AT_INFO:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)


def configured_format() -> LogFormat | None:
    """The format ``configure`` set in this process, if it ran: a worker process it starts
    logs the same way (and not at all beyond Python's warnings when it did not, as under
    ``bgremover watch``, whose terminal shows progress rows instead)."""
    handler = next((h for h in logging.getLogger().handlers if isinstance(h, _Handler)), None)
    return handler.log_format if handler is not None else None


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Every line logged inside (in this thread or task) carries ``fields``; they are gone
    again on leaving, whatever happened inside."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield


def _formatter(log_format: LogFormat) -> logging.Formatter:
    levels: list[Processor] = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name]
    run = structlog.contextvars.merge_contextvars
    if log_format == "text":
        return structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*levels, run],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _text],
        )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[stamp, *levels, _pid, run],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(default=str),
        ],
    )


def _pid(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Which process wrote the line: a web process and its workers share one stream."""
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        event["pid"] = record.process
    return event


def _text(_: WrappedLogger, __: str, event: EventDict) -> str:
    """``WARNING:  bgremover.x: what happened [job_id=… worker=…]`` and any traceback."""
    level = str(event.pop("level", "info")).upper()
    logger = event.pop("logger", "?")
    message = event.pop("event", "")
    exc_info: Any = event.pop("exc_info", None)
    stack = event.pop("stack_info", None)
    fields = sorted(event.items(), key=lambda item: (_RUN_ORDER.get(item[0], 99), item[0]))
    context = " ".join(f"{key}={value}" for key, value in fields if value is not None)
    line = f"{level}:  {logger}: {message}" + (f" [{context}]" if context else "")
    if exc_info:
        line += "\n" + logging.Formatter().formatException(exc_info)
    if stack:
        line += "\n" + str(stack)
    return line
