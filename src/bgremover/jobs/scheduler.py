"""The scheduler: hands the best pending jobs to the executor whenever it has a free slot.

It sleeps until woken (a submission, a finished job, a priority change) or for a second at
most, so submitting never blocks on it and a missed wake-up costs at most a second. Between
rounds it keeps the leases of this process's runs alive (and stops runs whose jobs another
process ended), re-queues runs whose leases expired, applies run ends the database could not
take before, publishes the progress of active batches (it follows time, so it moves between
their events), and cleans up old jobs. While the results store cannot take writes it starts
nothing (``outages.StorageGate`` probes it each round until a write succeeds); while the
database cannot (down, or its disk full) it says so once and retries each round.
"""

from __future__ import annotations

import logging
import threading
import time

from ..workers.base import Executor, Stopped
from .contract import JobStore
from .database import cannot_write, unreachable

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 1.0


class Scheduler:
    def __init__(
        self,
        service: JobStore,
        executor: Executor,
        *,
        cleanup_every: float,
        renew_every: float,
        progress_every: float,
    ) -> None:
        """``renew_every`` is the longest wait between upkeep rounds (lease renewal, recovery,
        learned timings, pauses), capped at ``_IDLE_WAIT_S`` (1 s): the upkeep also notices
        pauses and crashed processes, which should take a second, not a third of a lease. A
        longer value therefore means 1 s; zero or less is refused."""
        if renew_every <= 0:
            raise ValueError(f"Scheduler: renew_every must be above 0 s, not {renew_every}")
        self._service = service
        self._executor = executor
        self._cleanup_every = cleanup_every
        self._renew_every = min(renew_every, _IDLE_WAIT_S)
        self._progress_every = progress_every
        self._wakeup = threading.Condition()
        self._woken = False
        self._stopping = False
        self._send_again_at = 0.0
        """After a run the executor did not take: no claims before this (monotonic), so a
        broker that is down is tried once a round, not in a loop of claims and put-backs."""
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bgremover-scheduler", daemon=True)
        self._thread.start()
        self.wake()

    def wake(self) -> None:
        with self._wakeup:
            self._woken = True
            self._wakeup.notify()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        next_cleanup = next_renewal = next_progress = time.monotonic()
        outage = False
        while True:
            with self._wakeup:
                self._wakeup.wait_for(lambda: self._woken or self._stopping, _IDLE_WAIT_S)
                if self._stopping:
                    return
                self._woken = False
            try:
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + self._renew_every
                    self._service.retry_unapplied()
                    self._service.renew_leases()
                    self._service.recover()
                    self._service.refresh_timings()
                    self._service.follow_pauses()
                self.dispatch()
                if time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + self._progress_every
                    self._service.publish_progress()
                if time.monotonic() >= next_cleanup:
                    next_cleanup = time.monotonic() + self._cleanup_every
                    result = self._service.cleanup()
                    if result.jobs_deleted:
                        log.info("retention cleanup: %s", result)
            except Exception as exc:  # keep scheduling whatever one round did
                if not (unreachable(exc) or cannot_write(exc)):
                    log.exception("scheduler round failed")
                    continue
                # Said once; the next round starts with the leases, which ask the database.
                self._service.dependencies.lost("database", exc)
                if cannot_write(exc) and not outage:
                    self._service.storage_gate.suspect()  # its disk may be the store's too
                outage, next_renewal = True, time.monotonic()
            else:
                if outage:
                    self._service.dependencies.regained("database")
                    outage = False

    def dispatch(self) -> int:
        """Start pending jobs while the executor has room and the results store takes
        writes; returns how many started. A run the executor does not take (the broker is
        down) goes back to the queue uncounted and ends this round."""
        started = 0
        if time.monotonic() < self._send_again_at or not self._service.storage_gate.ready():
            return 0
        shared = self._executor.shared_slots()
        while shared is not None or self._executor.free_slots() > 0:
            item = self._service.claim_next(within=shared)
            if item is None:
                break
            dependency = "broker" if self._executor.remote else "workers"
            try:
                self._executor.submit(item)
            except Exception as exc:
                # Not the image's fault, and the run never started: the job waits in the
                # queue as it was (uncounted) and is sent again next round, once it goes.
                self._service.dependencies.lost(dependency, f"cannot send a run: {exc}")
                self._send_again_at = time.monotonic() + _IDLE_WAIT_S
                self._service.handle(Stopped(item.job_id, item.dispatch_id))
                break
            self._service.dependencies.regained(dependency)
            started += 1
        return started
