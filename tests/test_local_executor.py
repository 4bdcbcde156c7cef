"""The local process pool with real worker processes, the real model and real photos."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from PIL import Image

from bgremover import Settings
from bgremover.engine import STAGES, Stage
from bgremover.workers import (
    Calibration,
    Failed,
    Finished,
    Freed,
    Lost,
    Report,
    StageProgress,
    Started,
    Stopped,
    WorkItem,
    local,
)
from bgremover.workers.local import LocalProcessExecutor

from .waiting import Watched, until

pytestmark = pytest.mark.model

TIMEOUT_S = 90.0
"""Generous: inference takes seconds and the machine may be busy; a hang still fails."""


class Reports:
    """The sink: records every report with its arrival time and lets tests wait for one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._arrivals: list[tuple[float, Report]] = []
        self.calibrations: list[Calibration] = []
        """Warm-up timings the workers sent at start (not about any run)."""
        self.freed: list[str] = []
        """Workers that came free for a run (not about any run either)."""

    def __call__(self, report: Report) -> None:
        with self._changed:
            if isinstance(report, Calibration):
                self.calibrations.append(report)
            elif isinstance(report, Freed):
                self.freed.append(report.worker)
            else:
                self._arrivals.append((time.monotonic(), report))
            self._changed.notify_all()

    def wait_for(self, match: Callable[[Report], bool], timeout: float = TIMEOUT_S) -> Report:
        """The first report that matches, waiting for it to arrive."""
        found = until(
            Watched(self._changed, lambda: [r for _, r in self._arrivals if match(r)]),
            timeout=timeout,
            what="a matching report",
        )
        return found[0]

    def wait_calibrations(self, count: int) -> list[Calibration]:
        """The warm-up timings, once ``count`` workers have sent theirs."""
        calibrations = Watched(self._changed, lambda: list(self.calibrations))
        return until(calibrations, lambda c: len(c) >= count, TIMEOUT_S, f"{count} warm-ups")

    def wait_freed(self, count: int) -> list[str]:
        """The workers that reported a free slot, once ``count`` of them have."""
        freed = Watched(self._changed, lambda: list(self.freed))
        return until(freed, lambda f: len(f) >= count, TIMEOUT_S, f"{count} free slots")

    def final(self, job_id: str) -> Report:
        return self.wait_for(
            lambda r: r.job_id == job_id and isinstance(r, Finished | Failed | Stopped | Lost)
        )

    def in_model(self, job_id: str) -> Report:
        """Wait until the job's onnxruntime call is running (its ticker has reported)."""
        return self.wait_for(
            lambda r: (
                r.job_id == job_id
                and isinstance(r, StageProgress)
                and r.stage == Stage.INFERENCE.value
                and r.fraction > 0
            )
        )

    def arrived_at(self, report: Report) -> float:
        with self._changed:
            return next(at for at, r in self._arrivals if r is report)

    def all(self) -> list[Report]:
        with self._changed:
            return [r for _, r in self._arrivals]

    def of(self, job_id: str) -> list[Report]:
        return [r for r in self.all() if r.job_id == job_id]


Start = Callable[..., tuple[LocalProcessExecutor, Reports]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start an executor with a recording sink, ready to serve; shut down after the test."""
    executors: list[LocalProcessExecutor] = []

    def make(
        settings: Settings | None = None, workers: int = 2
    ) -> tuple[LocalProcessExecutor, Reports]:
        settings = (settings or Settings()).model_copy(update={"data_dir": tmp_path})
        executor = LocalProcessExecutor(settings, workers=workers)
        executors.append(executor)
        reports = Reports()
        executor.start(reports)
        assert executor.wait_ready(TIMEOUT_S), "the workers never became ready"
        return executor, reports

    yield make
    for executor in executors:
        executor.shutdown()


def work(job_id: str, source: Path, data_dir: Path) -> WorkItem:
    """An item for ``source``, put in the data dir's store as the job service would."""
    content_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    original_key = f"originals/{content_hash[:2]}/{content_hash}"
    target = data_dir / original_key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return WorkItem(
        job_id=job_id,
        dispatch_id=uuid.uuid4().hex,
        original_key=original_key,
        result_key=result_key(job_id),
    )


def result_key(job_id: str) -> str:
    name = hashlib.md5(job_id.encode()).hexdigest()  # a job id's shape: 32 hex digits
    return f"results/{name[:2]}/{name}.png"


def worker_name(started: Report) -> str:
    assert isinstance(started, Started)
    return started.worker.split()[0]  # "local-1 (pid 4242)"


def test_no_warm_up_runs_beside_a_job(
    photos: dict[str, Path], tmp_path: Path, slow_tiny_model: Path
) -> None:
    """A fresh server's first job gets the cores: the warm-up images of the other workers
    (timed while the pool is idle) stop when it starts, or never begin while it runs."""
    settings = Settings(data_dir=tmp_path, model_path=slow_tiny_model)
    executor = LocalProcessExecutor(settings, workers=2)
    reports = Reports()
    executor.start(reports)
    try:
        reports.wait_freed(1)
        for job_id in ("a", "b", "c"):  # on local-1, one after another
            executor.submit(work(job_id, photos["coffee.jpg"], tmp_path))
            assert isinstance(reports.final(job_id), Finished)
        # A warm-up is one model run: local-2's would have ended by now had it gone on.
        assert reports.calibrations == []
    finally:
        executor.shutdown()


def test_runs_items_on_two_workers_and_reports_stages_in_order(
    start: Start, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor, reports = start(workers=2)
    sources = {"a": photos["chelsea.jpg"], "b": photos["coffee.jpg"]}
    items = {job_id: work(job_id, source, tmp_path) for job_id, source in sources.items()}
    for item in items.values():
        executor.submit(item)
    assert executor.free_slots() == 0

    finals = {job_id: reports.final(job_id) for job_id in items}
    assert executor.free_slots() == 2
    everything = reports.all()
    first_final = min(everything.index(final) for final in finals.values())
    started = [r for r in everything[:first_final] if isinstance(r, Started)]
    assert len({worker_name(s) for s in started}) == 2, "the two items did not run side by side"

    for job_id, source in sources.items():
        history = reports.of(job_id)
        final = finals[job_id]
        assert isinstance(history[0], Started)
        assert history[-1] is final
        assert isinstance(final, Finished)
        progress = [r for r in history[1:-1] if isinstance(r, StageProgress)]
        assert len(progress) == len(history) - 2
        positions = [(STAGES.index(Stage(p.stage)), p.fraction) for p in progress]
        assert positions == sorted(positions), "progress went backwards"
        assert {p.stage for p in progress} == {s.value for s in STAGES}

        destination = tmp_path / items[job_id].result_key
        with Image.open(source) as original, Image.open(destination) as result:
            assert (result.format, result.mode) == ("PNG", "RGBA")
            assert result.size == original.size == (final.width, final.height)
        assert (final.format, final.bytes) == ("png", destination.stat().st_size)
        assert set(final.timings) == {s.value for s in STAGES}


def test_cancel_stops_running_inference_within_a_second_and_frees_the_worker(
    start: Start, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor, reports = start(workers=1)
    pids = executor.worker_pids()
    executor.submit(work("a", photos["astronaut.jpg"], tmp_path))
    reports.in_model("a")

    cancelled_at = time.monotonic()
    executor.cancel("a")
    final = reports.final("a")
    assert isinstance(final, Stopped)
    assert reports.arrived_at(final) - cancelled_at < 1.0
    assert executor.free_slots() == 1
    assert not (tmp_path / result_key("a")).exists()

    executor.submit(work("b", photos["coffee.jpg"], tmp_path))
    assert isinstance(reports.final("b"), Finished)
    assert executor.worker_pids() == pids, "the worker was replaced instead of reused"


def test_a_killed_worker_loses_only_its_own_run_and_is_replaced(
    start: Start, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor, reports = start(workers=2)
    executor.submit(work("a", photos["astronaut.jpg"], tmp_path))
    executor.submit(work("b", photos["coffee.jpg"], tmp_path))
    victim = worker_name(reports.wait_for(lambda r: r.job_id == "a" and isinstance(r, Started)))
    old_pid = executor.worker_pids()[victim]
    reports.in_model("a")

    os.kill(old_pid, signal.SIGKILL)
    crashed = reports.final("a")
    assert isinstance(crashed, Lost), "a dead worker is not the image's fault"
    assert "SIGKILL" in crashed.reason and "out of memory" in crashed.reason
    assert isinstance(reports.final("b"), Finished)

    new_pid = executor.worker_pids()[victim]
    assert new_pid != old_pid
    assert not psutil.pid_exists(old_pid)
    assert executor.wait_ready(TIMEOUT_S)
    # Both workers busy, so one of these two runs on the replacement.
    executor.submit(work("c", photos["chelsea.jpg"], tmp_path))
    executor.submit(work("d", photos["coffee.jpg"], tmp_path))
    for job_id in ("c", "d"):
        assert isinstance(reports.final(job_id), Finished)
    labels = {r.worker for r in reports.all() if isinstance(r, Started) and r.job_id in ("c", "d")}
    assert f"{victim} (pid {new_pid})" in labels


def test_bad_input_fails_its_own_item_with_the_engine_message(
    start: Start, photos: dict[str, Path], bad_inputs: dict[str, Path], tmp_path: Path
) -> None:
    executor, reports = start(workers=2)
    executor.submit(work("bad", bad_inputs["not_an_image"], tmp_path))
    executor.submit(work("good", photos["coffee.jpg"], tmp_path))

    failed = reports.final("bad")
    assert isinstance(failed, Failed)
    assert failed.code == "not_an_image"
    stored = hashlib.sha256(bad_inputs["not_an_image"].read_bytes()).hexdigest()
    assert stored in failed.message, "it names the stored file (the service names the upload)"
    assert isinstance(reports.final("good"), Finished)
    assert (tmp_path / result_key("good")).is_file()


def test_model_load_failure_fails_items_instead_of_crash_looping(
    start: Start, photos: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.onnx"
    executor, reports = start(Settings(model_path=missing), workers=1)
    pids = executor.worker_pids()

    for job_id in ("a", "b"):
        executor.submit(work(job_id, photos["coffee.jpg"], tmp_path))
        failed = reports.final(job_id)
        assert isinstance(failed, Failed)
        assert failed.code == "model_unavailable"
        assert str(missing) in failed.message
    assert executor.worker_pids() == pids
    assert executor.free_slots() == 1


def test_cancel_that_is_not_honoured_in_time_kills_the_worker_and_reports_stopped(
    start: Start, photos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "CANCEL_GRACE_S", 0.5)
    executor, reports = start(workers=1)
    (old_pid,) = executor.worker_pids().values()
    executor.submit(work("a", photos["astronaut.jpg"], tmp_path))
    reports.in_model("a")

    os.kill(old_pid, signal.SIGSTOP)  # A stage that cannot be interrupted, at its worst.
    executor.cancel("a")
    assert isinstance(reports.final("a"), Stopped)
    assert executor.worker_pids()["local-1"] != old_pid
    assert executor.wait_ready(TIMEOUT_S) and executor.free_slots() == 1


def test_shutdown_stops_every_worker_and_can_be_called_twice(
    start: Start, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor, _ = start(workers=2)
    pids = list(executor.worker_pids().values())
    assert all(psutil.pid_exists(pid) for pid in pids)

    executor.shutdown()
    executor.shutdown()
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert executor.free_slots() == 0
    with pytest.raises(RuntimeError):
        executor.submit(work("x", photos["coffee.jpg"], tmp_path))


def test_a_run_past_its_deadline_is_killed_as_hung_and_reported_lost(
    start: Start, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor, reports = start(workers=1)
    assert executor.wait_ready(TIMEOUT_S)
    (old_pid,) = executor.worker_pids().values()
    os.kill(old_pid, signal.SIGSTOP)  # alive, but it will never answer again
    executor.submit(replace(work("a", photos["coffee.jpg"], tmp_path), deadline_s=1.0))
    lost = reports.final("a")
    assert isinstance(lost, Lost) and "deadline" in lost.reason
    assert executor.worker_pids()["local-1"] != old_pid
    assert not psutil.pid_exists(old_pid)
    assert executor.wait_ready(TIMEOUT_S) and executor.free_slots() == 1


def test_each_idle_worker_times_a_warm_up_image_once_ready(start: Start) -> None:
    executor, reports = start(workers=2)
    assert executor.wait_ready(TIMEOUT_S)
    assert sorted(reports.wait_freed(2)) == ["local-1", "local-2"]
    calibrations = reports.wait_calibrations(2)
    assert sorted(c.worker for c in calibrations) == ["local-1", "local-2"]
    for calibration in calibrations:
        assert set(calibration.timings) == {s.value for s in STAGES}
        assert all(seconds > 0 for seconds in calibration.timings.values())
        assert calibration.pixels == 1200 * 800


def test_a_worker_takes_no_item_until_its_model_is_loaded_and_its_warm_up_gives_way(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    """A job handed to a worker still loading would show "processing" while it only waits,
    its ETA counting down for nothing (seconds on a fresh server): the slot opens, with a
    ``Freed`` report for the scheduler, when the model is loaded. The warm-up image the
    worker then times does not hold the first job back: it stops when the job comes."""
    executor = LocalProcessExecutor(Settings(data_dir=tmp_path), workers=1)
    reports = Reports()
    executor.start(reports)
    try:
        # Starting a process and loading the model take seconds.
        assert executor.free_slots() == 0
        with pytest.raises(RuntimeError, match="no free worker"):
            executor.submit(work("early", photos["coffee.jpg"], tmp_path))
        assert reports.wait_freed(1) == ["local-1"]
        assert executor.free_slots() == 1
        executor.submit(work("a", photos["coffee.jpg"], tmp_path))
        assert isinstance(reports.final("a"), Finished)
        # The warm-up (a full model run, seconds) had just begun: it gave way, unfinished.
        assert reports.calibrations == []
    finally:
        executor.shutdown()
