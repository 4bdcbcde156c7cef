"""Where jobs run: the executor contract here; the local process pool in ``.local``, Celery in
``.celery_executor``.

``jobs`` talks only to ``Executor``; which one runs (the local pool by default, Celery for
scale-out) is a matter of configuration. The package loads no executor itself: ``bgremover
remove`` needs ``.removers`` alone, not the pool (its logging, its pipes).
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

__all__ = [
    "Calibration",
    "Executor",
    "Failed",
    "Finished",
    "Freed",
    "Lost",
    "Report",
    "ReportSink",
    "StageProgress",
    "Started",
    "Stopped",
    "WorkItem",
]
