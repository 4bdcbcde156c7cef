"""What a Celery task message may carry, checked before a worker acts on it.

The broker is no boundary: whoever can write to it (a shared Redis, a leaked password) can
queue any message. A message names a run (job id, dispatch id) and repeats the storage keys
and options its dispatcher derived from the job's row; the worker derives them again from
the row and runs that, and refuses a message that is malformed or says anything else.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from typing import Any, TypeGuard

from ..storage import check_key
from ..storage.files import ID_PATTERN
from .base import WorkItem

_FIELDS = frozenset(f.name for f in fields(WorkItem))
_KEYS = {"original_key": "originals/", "result_key": "results/", "background_key": "backgrounds/"}
"""Each key a message names, and the store folder it must lie in."""
_FROM_ROW = ("original_key", "result_key", "background_key", "options", "clip")
"""What the job's row decides; a message that disagrees on any of these is refused."""


class RefusedMessage(ValueError):
    """A task message this system would not send: never run, only logged and dropped."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id}: refused a task message: {reason}")


def parse(message: object) -> WorkItem:
    """The work item ``message`` names, when it has the shape a dispatcher sends: ids,
    storage keys of the store's own shapes, options without a path; else RefusedMessage."""
    message, job_id, _ = _run_ids(message, _FIELDS, "a work item")
    batch_id = message.get("batch_id")  # optional: for the logs only
    if batch_id is not None and not _is_id(batch_id):
        raise RefusedMessage(job_id, f"batch_id {str(batch_id)[:40]!r} is not an id")
    for name, folder in _KEYS.items():
        key = message.get(name)
        if key is None and name == "background_key":
            continue
        if not isinstance(key, str) or not key.startswith(folder):
            raise RefusedMessage(job_id, f"{name} {str(key)[:80]!r} is not a key under {folder}")
        try:
            check_key(key)
        except ValueError as err:
            raise RefusedMessage(job_id, f"{name}: {err}") from None
    options = message.get("options", {})
    if not isinstance(options, dict) or "background_image" in options:
        raise RefusedMessage(
            job_id, "options must be a JSON object without background_image (a background "
            "is named by background_key)",
        )  # fmt: skip
    if not _valid_deadline(message.get("deadline_s")):
        raise RefusedMessage(job_id, "deadline_s is not a positive number of seconds")
    if not isinstance(message.get("clip", False), bool):
        raise RefusedMessage(job_id, "clip is not true or false")
    return WorkItem(**message)


def _valid_deadline(value: Any) -> bool:
    if value is None:
        return True
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def check_against_row(sent: WorkItem, row: WorkItem) -> None:
    """RefusedMessage unless ``sent`` names the files and options the job's row does."""
    for name in _FROM_ROW:
        if getattr(sent, name) != getattr(row, name):
            raise RefusedMessage(sent.job_id, f"its {name} is not the job's")


def invitation(item: WorkItem) -> dict[str, str]:
    """The message inviting a worker to help with the chunks of clip run ``item``: the run's
    ids only (the helper reads everything else from the job's row)."""
    return {"job_id": item.job_id, "dispatch_id": item.dispatch_id}


def parse_invitation(message: object) -> tuple[str, str]:
    """The job and dispatch ids an invitation names; RefusedMessage for anything else."""
    _, job_id, dispatch_id = _run_ids(
        message, frozenset(("job_id", "dispatch_id")), "an invitation"
    )
    return job_id, dispatch_id


def _run_ids(
    message: object, allowed: frozenset[str], what: str
) -> tuple[dict[str, Any], str, str]:
    """``message`` as a dict of only ``allowed`` fields, with the job and dispatch ids of the
    run it names; RefusedMessage unless it is one (``what`` names the kind in the reason)."""
    if not isinstance(message, dict):
        raise RefusedMessage("?", f"it is a {type(message).__name__}, not {what}")
    job_id = message.get("job_id")
    if not _is_id(job_id):
        raise RefusedMessage("?", f"job_id {str(job_id)[:40]!r} is not a job id")
    unknown = sorted(str(name)[:40] for name in set(message) - allowed)
    if unknown:
        raise RefusedMessage(job_id, f"unknown fields {unknown[:5]} for {what}")
    dispatch_id = message.get("dispatch_id")
    if not _is_id(dispatch_id):
        raise RefusedMessage(job_id, f"dispatch_id {str(dispatch_id)[:40]!r} is not an id")
    return message, job_id, dispatch_id


def _is_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and re.fullmatch(ID_PATTERN, value) is not None
