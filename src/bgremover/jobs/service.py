"""The job service: every change to jobs, batches and sessions goes through here.

It is the sum of three parts over one shared core (``core``): ``commands`` (what users ask:
create, cancel, retry, reprioritise, delete), ``reports`` (what workers tell: claims,
progress, the end of a run, leases and recovery) and ``queries`` (reads and snapshots).
The database decides every change, so any number of services in any number of processes can
share one database; events are published only after the change commits, and progress lives
in memory between the database writes at stage boundaries.
"""

from __future__ import annotations

from .commands import Commands
from .queries import Queries
from .reports import Reports


class JobService(Commands, Reports, Queries):
    """Thread-safe; one per process (or several, on one database). The scheduler and
    executor are attached after creation."""
