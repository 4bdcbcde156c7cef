"""The job service: every change to jobs, batches and sessions goes through here.

It is the sum of four parts over one shared core (``core``): ``commands`` (what users ask:
create, cancel, retry, reprioritise, delete), ``runs`` (what workers tell: claims,
progress, the end of a run, leases and recovery), ``pauses`` (holding the queue or a
batch) and ``queries`` (reads and snapshots).
The database decides every change, so any number of services in any number of processes can
share one database; events are published only after the change commits, and progress lives
in memory between the database writes at stage boundaries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .commands import Commands
from .pauses import Pauses
from .queries import Queries


class JobService(Commands, Pauses, Queries):
    """Thread-safe; one per process (or several, on one database). The scheduler and
    executor are attached after creation."""


if TYPE_CHECKING:
    from .contract import JobStore

    # mypy checks here that JobService keeps every promise of contract.JobStore.
    _KEEPS_THE_CONTRACT: type[JobStore] = JobService
