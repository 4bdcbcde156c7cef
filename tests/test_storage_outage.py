"""A results store that cannot take writes for a while (ENOSPC): the runs it cuts short go
back to the queue, dispatch waits (probing the store) instead of running the model for
nothing, the outage shows in the health and as an event, and every job completes once writes
succeed again. Real runs of the tiny model, a real SQLite file, the real scheduler."""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from bgremover import Settings
from bgremover.api import load_remover
from bgremover.dependencies import DependencyState
from bgremover.jobs.bus.base import Event
from bgremover.jobs.bus.memory import InMemoryEventBus
from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.outages import StorageGate
from bgremover.jobs.scheduler import Scheduler
from bgremover.jobs.sequences import EventSeq
from bgremover.jobs.service import JobService
from bgremover.storage import LocalStorage
from bgremover.storage.files import FileStore
from bgremover.system import OutageListener
from bgremover.workers.base import Executor, Failed, ReportSink, WorkItem
from bgremover.workers.removers import Removers
from bgremover.workers.running import ProgressReports, run_item

from .disk_support import CannotMount, fill, small_disk
from .jobs_support import WAIT_S, stage_uploads
from .serving import unseen
from .waiting import Watched, until

BATCH = 8


class FillingStorage(LocalStorage):
    """The data dir's store on a disk the test fills and frees: while ``full``, every write
    (a stored result, a probe) fails with ENOSPC as the OS would. Results go through ``put``
    (as with S3), so the write that fails is the store's own."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.full = False
        self.probes = 0
        self.changed = threading.Condition()

    def local_path(self, key: str) -> Path | None:
        return None

    def _write(self) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")

    def put(self, key: str, source: Path) -> None:
        self._write()
        super().put(key, source)

    def probe(self) -> None:
        with self.changed:
            self.probes += 1
            self.changed.notify_all()
        self._write()
        super().probe()


class ThreadWorkers(Executor):
    """Runs each item with ``run_item`` and one loaded model on threads of this process, so
    the workers use the test's store; counts every run started."""

    def __init__(self, settings: Settings, storage: LocalStorage, slots: int) -> None:
        self._removers = Removers(settings, first=load_remover(settings))
        self._storage = storage
        self._scratch = settings.data_dir / "scratch"
        self._scratch.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(slots, "test-worker")
        self._slots = slots
        self._running = 0
        self.started = 0
        self.changed = threading.Condition()
        self._sink: ReportSink | None = None

    def start(self, sink: ReportSink) -> None:
        self._sink = sink

    def free_slots(self) -> int:
        with self.changed:
            return self._slots - self._running

    def submit(self, item: WorkItem) -> None:
        with self.changed:
            self._running += 1
            self.started += 1
        self._pool.submit(self._run, item)

    def _run(self, item: WorkItem) -> None:
        assert self._sink is not None
        progress = ProgressReports(item, self._sink)
        report = run_item(item, self._removers, self._storage, self._scratch, progress=progress)
        with self.changed:
            self._running -= 1
            self.changed.notify_all()
        self._sink(report)

    def idle(self) -> bool:
        with self.changed:
            return self._running == 0

    def cancel(self, job_id: str) -> None:
        """Nothing to stop: the test cancels nothing."""

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


@contextmanager
def running_system(
    data_dir: Path, model: Path, storage: LocalStorage, *, start: bool = True
) -> Iterator[tuple[JobService, ThreadWorkers, Scheduler]]:
    """A job service on a SQLite file in ``data_dir``, two thread workers on ``storage`` and
    the real scheduler (started unless ``start`` is False); all stopped after the block."""
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'jobs.sqlite3'}",
        model_path=model,
        max_concurrent_jobs=2,
        intra_op_threads=1,
    )
    engine = connect(settings.database_url or "")
    migrate(engine)
    seq = EventSeq(engine)
    service = JobService(
        transactions=session_factory(engine),
        files=FileStore(storage, data_dir),
        bus=InMemoryEventBus(seq=seq.take, last=seq.last()),
        settings=settings,
    )
    workers = ThreadWorkers(settings, storage, slots=2)
    scheduler = Scheduler(
        service, workers, cleanup_every=3600, renew_every=1.0, progress_every=3600
    )
    service.attach(cancel_running=workers.cancel, wake=scheduler.wake)
    workers.start(service.handle)
    if start:
        scheduler.start()
    try:
        yield service, workers, scheduler
    finally:
        scheduler.stop()
        workers.shutdown()
        service.close()


@pytest.fixture
def system(
    tmp_path: Path, tiny_model: Path
) -> Iterator[tuple[JobService, ThreadWorkers, FillingStorage]]:
    storage = FillingStorage(tmp_path / "files")
    with running_system(tmp_path, tiny_model, storage) as (service, workers, _):
        yield service, workers, storage


def test_a_full_disk_holds_the_queue_and_every_job_completes_once_it_has_room(
    system: tuple[JobService, ThreadWorkers, FillingStorage],
    photos: dict[str, Path],
    tmp_path: Path,
) -> None:
    service, workers, storage = system
    ended: dict[str, str] = {}
    health: list[dict[str, object]] = []
    arrived = threading.Condition()

    def note(event: Event) -> None:
        with arrived:
            if event.type == "job.updated":
                job = event.data["job"]
                if job["status"] in ("completed", "failed", "cancelled"):
                    ended[job["id"]] = job["status"]
            elif event.type == "health.updated":
                health.append(event.data["storage"])
            arrived.notify_all()

    def read() -> None:
        while (event := events.get()) is not None:
            note(event)

    with service.bus.subscribe() as events:
        threading.Thread(target=read, name="test-events", daemon=True).start()
        # Each in new bytes: a repeated photo would reuse the first run's mask at once.
        copies = [tmp_path / f"coffee-{index}.jpg" for index in range(BATCH)]
        for index, copy in enumerate(copies):
            copy.write_bytes(unseen(photos["coffee.jpg"], f"copy {index}"))
        created = service.create_batch(stage_uploads(tmp_path, *copies))
        # The disk fills after the first result is stored, with runs of the batch under way.
        until(Watched(arrived, lambda: len(ended) >= 1), what="the first job ended")
        storage.full = True
        until(
            Watched(arrived, lambda: any(s["ok"] is False for s in health) or len(ended) == BATCH),
            what="the outage was announced (or the batch ended)",
        )
        failed = {job_id for job_id, status in ended.items() if status == "failed"}
        assert not failed, [
            (job.error.code, job.error.message)
            for job in map(service.get_job, failed)
            if job.error is not None
        ]
        assert health[0] == {
            "ok": False,
            "since": health[0]["since"],
            "error": "results storage is full",
        }
        assert service.storage_gate.state.error == "results storage is full"

        # The runs under way when the disk filled end; no new one starts while probes fail.
        # A slot frees before its run's report closes the gate (the executors' order), so a
        # claim made in that moment may still start: a probe comes in a later scheduler round,
        # after such a run was handed over, and the count starts once that one ended too.
        until(Watched(workers.changed, workers.idle), what="the runs under way ended")
        probed = storage.probes
        until(
            Watched(storage.changed, lambda: storage.probes > probed),
            what="a probe of the full store",
        )
        until(Watched(workers.changed, workers.idle), what="runs claimed before the outage ended")
        started = workers.started
        probed = storage.probes
        until(
            Watched(storage.changed, lambda: storage.probes >= probed + 3), what="three more probes"
        )
        assert workers.started == started, "the model ran while the store could not take it"
        with arrived:
            assert len(ended) < BATCH and not any(s["ok"] for s in health)

        storage.full = False
        until(Watched(arrived, lambda: len(ended) == BATCH), what="every job ended")
        assert health[-1]["ok"] is True and health[-1]["error"] is None

    jobs = [service.get_job(job.id) for job in created.jobs]
    assert [job.status for job in jobs] == ["completed"] * BATCH, [
        (job.status, job.error) for job in jobs
    ]
    retried = [job for job in jobs if job.attempt > 1]
    assert retried, "no run was cut short: the disk filled after the batch"
    assert all(job.error is None for job in jobs)
    for job in jobs:
        _, result = service.job_files(job.id)
        assert result is not None and storage.size(result)
    assert service.storage_gate.state.ok
    assert not list(storage.root.rglob("*.part")), "a half-written file was left"


def test_a_result_too_large_for_its_format_still_fails_as_the_images_fault(
    tmp_path: Path, tiny_model: Path
) -> None:
    """Not every unwritable result is an outage: one WebP cannot hold stays the image's."""
    storage = LocalStorage(tmp_path / "files")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (16_500, 8), "white").save(wide)
    original = "originals/ab/" + "ab" * 32
    storage.put(original, wide)
    item = WorkItem(
        job_id="a" * 32,
        dispatch_id="b" * 32,
        original_key=original,
        result_key="results/aa/" + "a" * 32 + ".webp",
        options={"format": "webp"},
    )
    settings = Settings(data_dir=tmp_path, model_path=tiny_model)
    report = run_item(item, Removers(settings, first=load_remover(settings)), storage, tmp_path)
    assert isinstance(report, Failed) and report.code == "output_unwritable", report
    assert "WEBP" in report.message and str(tmp_path) not in report.message


def test_a_failure_another_process_announces_holds_dispatch_here_until_a_probe_passes(
    tmp_path: Path,
) -> None:
    """A remote worker's full store reaches the dispatching process through the bus; its
    own announcement of a failure that ended before it recovered does not."""
    storage = FillingStorage(tmp_path / "files")
    announced: list[DependencyState] = []
    clock = [0.0]
    gate = StorageGate(
        storage, announced.append, lambda: datetime.now(UTC), monotonic=lambda: clock[0]
    )
    listener = OutageListener(InMemoryEventBus(), gate)
    began = datetime.now(UTC)
    failure = {"ok": False, "since": began.isoformat(), "error": "results storage is full"}
    listener.heard(Event(7, "health.updated", {"storage": failure}))
    assert gate.state.error == "results storage is full" and not announced
    storage.full = True
    assert not gate.ready() and storage.probes == 0  # the first probe is not due yet
    clock[0] += 0.5
    assert not gate.ready() and storage.probes == 1  # due: it fails
    storage.full = False
    clock[0] += 0.5
    assert not gate.ready() and storage.probes == 1  # the next waits twice as long
    clock[0] += 0.5
    assert gate.ready() and storage.probes == 2
    assert [state.ok for state in announced] == [True]
    listener.heard(Event(8, "health.updated", {"storage": failure}))  # an old echo
    assert gate.state.ok


def test_a_database_disk_that_fills_while_nothing_runs_is_said_once_and_holds_the_queue(
    tmp_path: Path, tiny_model: Path, photos: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The whole data dir (SQLite database and store) on a small disk that fills while jobs
    wait and none runs: no run meets the full store, so only the scheduler's claim (a write)
    can find out. It says so once (the database and the store, which shares the disk), not a
    traceback each round, starts nothing, and every job completes once the disk has room."""
    try:
        with small_disk(tmp_path / "disk", size_mb=16) as disk:
            storage = LocalStorage(disk / "files")
            started = running_system(disk, tiny_model, storage, start=False)
            with started as (service, workers, scheduler):
                copies = [tmp_path / f"coffee-{index}.jpg" for index in range(3)]
                for index, copy in enumerate(copies):
                    copy.write_bytes(unseen(photos["coffee.jpg"], f"copy {index}"))
                created = service.create_batch(stage_uploads(tmp_path, *copies))
                ids = {job.id for job in created.jobs}
                with service.bus.subscribe() as events:
                    filler = fill(disk)
                    scheduler.start()
                    # The announcement cannot be published (its seq is a write to the full
                    # disk): open pages are told to re-read the state instead.
                    resync = None
                    while resync is None or resync.type != "resync":
                        resync = events.get(timeout=WAIT_S)
                        assert resync is not None, "the full disk was not announced"
                    database = service.dependencies.states()["database"]
                    assert (database.ok, database.error) == (False, "database or disk is full")
                    assert service.storage_gate.state.error == "results storage is full"
                    assert workers.started == 0
                    filler.unlink()
                    ended: set[str] = set()
                    while not ids <= ended:
                        event = events.get(timeout=WAIT_S)
                        assert event is not None, "no job ended once the disk had room"
                        job = event.data.get("job", {}) if event.type == "job.updated" else {}
                        if job.get("status") in ("completed", "failed", "cancelled"):
                            ended.add(job["id"])
                jobs = [service.get_job(job_id) for job_id in ids]
                assert [job.status for job in jobs] == ["completed"] * len(ids)
                assert service.dependencies.states()["database"].ok
                assert service.storage_gate.state.ok
    except CannotMount as exc:
        pytest.skip(f"no size-limited disk to fill: {exc}")
    assert "scheduler round failed" not in caplog.text
