"""A running clip's progress as the job system keeps it: percent by frames done, and the
time left from this run's own seconds per frame once its worker has measured a few (before
that, from the learned time of a still image of the clip's size, which is what one frame
costs). Written to the database every ``PERSIST_S`` (renewing the run's lease), not per
frame."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.stages import Stage
from ..workers.base import StageProgress

if TYPE_CHECKING:
    from .snapshots import Live

PERSIST_S = 2.0
"""How often a running clip's stage and percent are written (and its lease renewed)."""


@dataclass
class ClipRun:
    frames: int
    label: str
    """What its worker says it is on: "frame 124 of 300"."""
    done: int = 0
    frame_seconds: float | None = None
    """This run's measured seconds per frame (None until its worker has measured some)."""
    persisted_at: float | None = None

    def remaining(self, learned_frame_seconds: float) -> float:
        """Seconds left: the frames to go at this run's pace, or the learned one."""
        pace = self.frame_seconds if self.frame_seconds is not None else learned_frame_seconds
        return max(0, self.frames - self.done) * pace


_LABEL = re.compile(r"frame (\d+) of (\d+)")


def from_label(label: str | None) -> ClipRun | None:
    """A clip run held by another process, from the stage its row holds ("frame 124 of
    300"); None for any other stage."""
    found = _LABEL.fullmatch(label or "")
    if found is None:
        return None
    frames = int(found[2])
    return ClipRun(frames, found[0], done=max(0, int(found[1]) - 1))


def advance(live: Live, report: StageProgress, now: float) -> tuple[bool, float]:
    """Apply a clip's frame report to ``live``; whether it is due to be written now (the
    first frame report, then every ``PERSIST_S``), and the job's percent."""
    frames = report.frames or 1
    clip = live.clip
    if clip is None:
        clip = live.clip = ClipRun(frames, report.stage)
    clip.frames, clip.label = frames, report.stage
    clip.done = max(clip.done, round(report.fraction * frames))
    if report.frame_seconds is not None:
        clip.frame_seconds = report.frame_seconds
    percent = max(live.percent, 100.0 * min(1.0, report.fraction))
    live.stage, live.fraction, live.percent = Stage.INFERENCE, report.fraction, percent
    due = clip.persisted_at is None or now - clip.persisted_at >= PERSIST_S
    if due:
        clip.persisted_at = now
    return due, percent
