"""Where jobs run: the executor contract and its local process pool.

``jobs`` talks only to ``Executor``; which one runs (the local pool by default, Celery for
scale-out) is a matter of configuration.
"""

from .base import (
    Calibration,
    Executor,
    Failed,
    Finished,
    Freed,
    Lost,
    Report,
    ReportSink,
    StageProgress,
    Started,
    Stopped,
    WorkItem,
)
from .local import LocalProcessExecutor

__all__ = [
    "Calibration",
    "Executor",
    "Failed",
    "Finished",
    "Freed",
    "LocalProcessExecutor",
    "Lost",
    "Report",
    "ReportSink",
    "StageProgress",
    "Started",
    "Stopped",
    "WorkItem",
]
