"""The whole job system with real worker processes, the real model and a real SQLite file:
a batch through to results, cancelling a running inference, a worker killed mid-job, and a
restart mid-batch."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from bgremover import Settings
from bgremover.jobs import Event, JobSystem, Subscription
from bgremover.workers.local import LocalProcessExecutor

from .jobs_support import stage_uploads

pytestmark = pytest.mark.model

TIMEOUT_S = 120.0


def settings_for(root: Path) -> Settings:
    return Settings(
        data_dir=root,
        database_url=f"sqlite:///{root / 'jobs.sqlite3'}",
        max_concurrent_jobs=2,
    )


@pytest.fixture
def system(tmp_path: Path) -> Iterator[JobSystem]:
    with JobSystem(settings_for(tmp_path)) as running:
        yield running


def collect(subscription: Subscription, until: Callable[[list[Event]], bool]) -> list[Event]:
    """Read events until ``until(events)`` holds; fail after TIMEOUT_S."""
    events: list[Event] = []
    deadline = time.monotonic() + TIMEOUT_S
    while not until(events):
        assert time.monotonic() < deadline, f"timed out; last events: {events[-5:]}"
        event = subscription.get(0.5)
        if event is not None:
            events.append(event)
    return events


def ended(job_ids: set[str]) -> Callable[[list[Event]], bool]:
    def check(events: list[Event]) -> bool:
        done = {
            e.data["job"]["id"]
            for e in events
            if e.type == "job.updated"
            and e.data["job"].get("status") in ("completed", "failed", "cancelled")
        }
        return job_ids <= done

    return check


def test_a_batch_of_photos_runs_through_worker_processes(
    system: JobSystem, photos: dict[str, Path], tmp_path: Path, bad_inputs: dict[str, Path]
) -> None:
    sources = [photos["coffee.jpg"], photos["chelsea.jpg"], bad_inputs["not_an_image"]]
    with system.bus.subscribe() as subscription:
        created = system.service.create_batch(stage_uploads(tmp_path, *sources))
        ids = {job.id for job in created.jobs}
        events = collect(
            subscription,
            lambda evs: (
                ended(ids)(evs)
                and any(
                    e.type == "notification"
                    and e.data.get("batch_id") == created.batch.id
                    and "Batch" in e.data["title"]
                    for e in evs
                )
            ),
        )
    jobs = {job.file_name: job for job in (system.service.get_job(i) for i in ids)}
    assert jobs["letter.jpg"].status == "failed"
    assert (
        jobs["letter.jpg"].error is not None and "not an image" in jobs["letter.jpg"].error.message
    )
    for name in ("coffee.jpg", "chelsea.jpg"):
        assert jobs[name].status == "completed", jobs[name].error
        _, result = system.service.job_paths(jobs[name].id)
        assert result is not None
        with Image.open(result) as image:
            assert image.mode == "RGBA" and image.size == Image.open(photos[name]).size
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    progress: dict[str, float] = {}
    stages: dict[str, list[str]] = {}
    for event in events:
        data = event.data.get("job", event.data)
        if event.type in ("job.progress", "job.updated") and data.get("status") != "pending":
            job_id = data["id"]
            assert data.get("progress", 0) >= progress.get(job_id, 0), "progress went back"
            progress[job_id] = data.get("progress", progress.get(job_id, 0))
            if data.get("stage"):
                stages.setdefault(job_id, []).append(data["stage"])
    coffee = list(dict.fromkeys(stages[jobs["coffee.jpg"].id]))
    assert coffee == ["Loading", "Preprocessing", "AI model", "Mask", "Compositing", "Saving"]
    batch = system.service.get_batch(created.batch.id)
    assert (batch.status, batch.counts.completed, batch.counts.failed) == ("completed", 2, 1)
    notices = [e.data for e in events if e.type == "notification"]
    assert any("2 done, 1 failed" in n["body"] for n in notices)


def test_cancelling_a_running_job_lets_the_rest_of_the_batch_finish(
    system: JobSystem, photos: dict[str, Path], tmp_path: Path
) -> None:
    sources = [photos["astronaut.jpg"], photos["coffee.jpg"], photos["chelsea.jpg"]]
    with system.bus.subscribe() as subscription:
        created = system.service.create_batch(stage_uploads(tmp_path, *sources))
        first = created.jobs[0].id

        def in_model(events: list[Event]) -> bool:
            return any(
                e.type == "job.progress" and e.data["id"] == first and e.data["stage"] == "AI model"
                for e in events
            )

        collect(subscription, in_model)
        system.service.cancel_job(first)
        assert system.service.get_job(first).status == "cancelled"
        collect(subscription, ended({j.id for j in created.jobs}))
    assert [system.service.get_job(j.id).status for j in created.jobs[1:]] == ["completed"] * 2
    assert system.service.get_job(first).status == "cancelled"
    assert system.executor.free_slots() == 2


def test_a_cancelled_worker_is_free_again_within_a_second(
    system: JobSystem, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor = system.executor
    assert isinstance(executor, LocalProcessExecutor)
    with system.bus.subscribe() as subscription:
        job = system.service.create_batch(stage_uploads(tmp_path, photos["astronaut.jpg"])).jobs[0]
        collect(
            subscription,
            lambda events: any(
                e.type == "job.progress"
                and e.data["stage"] == "AI model"
                and e.data["progress"] > 20
                for e in events
            ),
        )
        started = time.monotonic()
        system.service.cancel_job(job.id)
        while executor.free_slots() < 2:
            assert time.monotonic() - started < 1.0, "the worker was still busy after 1 s"
            time.sleep(0.01)


def test_a_killed_worker_fails_only_its_own_job_and_is_replaced(
    system: JobSystem, photos: dict[str, Path], tmp_path: Path
) -> None:
    executor = system.executor
    assert isinstance(executor, LocalProcessExecutor)
    assert executor.wait_ready(60)
    sources = [photos["astronaut.jpg"], photos["coffee.jpg"], photos["chelsea.jpg"]]
    with system.bus.subscribe() as subscription:
        created = system.service.create_batch(stage_uploads(tmp_path, *sources))
        victim = created.jobs[0].id
        events = collect(
            subscription,
            lambda evs: any(
                e.type == "job.updated"
                and e.data["job"]["id"] == victim
                and e.data["job"]["worker"]
                for e in evs
            ),
        )
        worker = next(
            e.data["job"]["worker"]
            for e in events
            if e.type == "job.updated" and e.data["job"]["id"] == victim and e.data["job"]["worker"]
        )
        pid = int(worker.split("pid ")[1].rstrip(")"))
        os.kill(pid, signal.SIGKILL)
        collect(subscription, ended({j.id for j in created.jobs}))
    killed = system.service.get_job(victim)
    assert killed.status == "failed" and killed.error is not None
    assert killed.error.code == "worker_crashed" and "SIGKILL" in killed.error.message
    assert [system.service.get_job(j.id).status for j in created.jobs[1:]] == ["completed"] * 2
    assert pid not in executor.worker_pids().values() and len(executor.worker_pids()) == 2
    retried = system.service.retry_job(victim).jobs[0]
    with system.bus.subscribe() as subscription:
        collect(subscription, ended({retried.id}))
    assert system.service.get_job(retried.id).status == "completed"


def test_a_restart_mid_batch_loses_nothing(photos: dict[str, Path], tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    sources = [photos[n] for n in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")] * 2
    first = JobSystem(settings).start()
    with first.bus.subscribe() as subscription:
        created = first.service.create_batch(stage_uploads(tmp_path, *sources))
        ids = {job.id for job in created.jobs}
        collect(
            subscription,
            lambda evs: any(
                e.type == "job.updated" and e.data["job"]["status"] == "completed" for e in evs
            ),
        )
    first.stop()  # mid-batch: some done, some running, some waiting
    statuses = {first.service.get_job(i).status for i in ids}
    assert "completed" in statuses and statuses & {"processing", "pending"}

    second = JobSystem(settings)
    left = {i for i in ids if second.service.get_job(i).status != "completed"}
    with second.bus.subscribe() as subscription, second:  # start() re-queues, then runs
        collect(subscription, ended(left))
        final = [second.service.get_job(i) for i in ids]
    assert [job.status for job in final] == ["completed"] * len(ids)
    assert second.service.get_batch(created.batch.id).counts.completed == len(ids)
