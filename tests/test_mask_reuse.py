"""Nothing computed twice: a job on an original whose model mask is kept skips the model.

Real worker processes on the tiny model run the derive, the second upload and the corrupt
entry; the size bound, retention and the estimates are the job service's own (a harness
with reported runs)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from bgremover import Remover, Settings, load_remover
from bgremover.engine import RemoveOptions, Stage
from bgremover.engine.remover import MaskMismatch
from bgremover.jobs.bus.base import Event, Subscription
from bgremover.jobs.eta.clock import size_bucket
from bgremover.jobs.tables import JobRow, MaskRow, StageDurationRow
from bgremover.storage.files import FileStore
from bgremover.system import JobSystem
from bgremover.workers.base import Finished, StageProgress

from .jobs_support import (
    STAGE_TIMINGS,
    WAIT_S,
    Harness,
    build_harness,
    claim,
    run_to_completion,
    stage_uploads,
)

pytestmark = pytest.mark.model

REUSED = "AI model: reused"
MASK = RemoveOptions(format="mask")


@pytest.fixture(scope="module")
def tiny_remover(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Remover:
    cache = tmp_path_factory.mktemp("cache")
    return load_remover(Settings(model_path=tiny_model, cache_dir=cache))


def one_worker(tmp_path: Path, tiny_model: Path, **overrides: Any) -> Settings:
    """A job system's settings in ``tmp_path``: SQLite, the tiny model, one worker."""
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}",
        model_path=tiny_model,
        max_concurrent_jobs=1,
        **overrides,
    )


@pytest.fixture
def system(tmp_path: Path, tiny_model: Path) -> Iterator[JobSystem]:
    with JobSystem(one_worker(tmp_path, tiny_model)) as running:
        yield running


def run(system: JobSystem, subscription: Subscription, job_id: str) -> list[str]:
    """Wait for the job to end (completed, else fail); the stage names it showed, in order."""
    stages: list[str] = []
    while True:
        event: Event | None = subscription.get(WAIT_S)
        assert event is not None, f"job {job_id}: no event for {WAIT_S:.0f} s, stuck"
        data = event.data.get("job", event.data)
        if data.get("id") != job_id or event.type not in ("job.updated", "job.progress"):
            continue
        if data.get("stage") and data["stage"] not in stages:
            stages.append(data["stage"])
        if data.get("status") in ("completed", "failed", "cancelled"):
            assert data["status"] == "completed", data.get("error")
            return stages


def upload(system: JobSystem, root: Path, photo: Path, options: RemoveOptions) -> str:
    created = system.service.create_batch(stage_uploads(root, photo), options=options)
    return created.jobs[0].id


def result_of(system: JobSystem, job_id: str) -> Image.Image:
    _, key = system.service.job_files(job_id)
    assert key is not None
    with system.service.files.storage.open(key) as f, Image.open(f) as image:
        image.load()
        return image.copy()


def mask_rows(system: JobSystem) -> list[MaskRow]:
    with system.service._transactions() as db:
        return list(db.scalars(select(MaskRow)))


def stages_timed(system: JobSystem, job_id: str) -> set[str]:
    with system.service._transactions() as db:
        return set(
            db.scalars(select(StageDurationRow.stage).where(StageDurationRow.job_id == job_id))
        )


def test_a_kept_mask_gives_the_fresh_runs_result_for_any_mask_options(
    tiny_remover: Remover, photos: dict[str, Path]
) -> None:
    photo = photos["coffee.jpg"]
    first = tiny_remover.process(photo, encode_result=False)
    assert first.model_mask is not None and not first.mask_reused
    options = RemoveOptions(post_process_mask=True, format="mask")
    fresh = tiny_remover.process(photo, options, encode_result=False)
    reported: list[Stage] = []
    reused = tiny_remover.process(
        photo,
        options,
        encode_result=False,
        mask=first.model_mask,
        progress=lambda stage, _: reported.append(stage),
    )
    assert reused.mask_reused
    assert np.array_equal(np.asarray(reused.image), np.asarray(fresh.image))
    assert Stage.PREPROCESSING not in reported and Stage.INFERENCE in reported
    assert Stage.INFERENCE not in reused.timings  # the model's time is not learned from it
    with pytest.raises(MaskMismatch):
        tiny_remover.process(photo, mask=first.model_mask.resize((10, 10)))


def test_the_mask_key_names_the_original_and_the_model_never_a_path(
    tiny_remover: Remover, tiny_model: Path, tmp_path: Path
) -> None:
    content = "ab" * 32
    key = FileStore.mask_key(content, tiny_remover.model_identity)
    assert key.startswith("masks/") and key.endswith(".png")
    other_model = shutil.copy(tiny_model, tmp_path / "other.onnx")
    other = load_remover(Settings(model_path=other_model, cache_dir=tmp_path / "cache"))
    assert FileStore.mask_key(content, other.model_identity) != key
    assert FileStore.mask_key("cd" * 32, tiny_remover.model_identity) != key
    with pytest.raises(ValueError):
        FileStore.mask_key("../../etc/passwd", tiny_remover.model_identity)


def test_derive_and_a_second_upload_reuse_the_mask_and_a_corrupt_one_is_made_again(
    system: JobSystem, photos: dict[str, Path], tmp_path: Path
) -> None:
    photo = photos["coffee.jpg"]
    with system.bus.subscribe() as subscription:
        first = upload(system, tmp_path, photo, MASK)
        stages = run(system, subscription, first)
        assert stages == ["Loading", "Preprocessing", "AI model", "Mask", "Compositing", "Saving"]
        (kept,) = mask_rows(system)
        first_mask = np.asarray(result_of(system, first))

        derived = system.service.derive_job(first, RemoveOptions(format="png")).id
        assert run(system, subscription, derived) == [
            "Loading", REUSED, "Mask", "Compositing", "Saving"
        ]  # fmt: skip
        assert np.array_equal(np.asarray(result_of(system, derived))[..., 3], first_mask)
        assert not {"AI model", "Preprocessing"} & stages_timed(system, derived)

        again = upload(system, tmp_path, photo, MASK)
        assert system.service.get_job(again).status in ("pending", "processing")
        assert REUSED in run(system, subscription, again)
        assert np.array_equal(np.asarray(result_of(system, again)), first_mask)
        assert [row.key for row in mask_rows(system)] == [kept.key]

        stored = system.service.files.storage.local_path(kept.key)
        assert stored is not None
        stored.write_bytes(b"\x89PNG\r\n\x1a\n not a mask any more")
        repaired = system.service.derive_job(first, RemoveOptions(format="mask")).id
        assert "AI model" in run(system, subscription, repaired)
        assert np.array_equal(np.asarray(result_of(system, repaired)), first_mask)
        with Image.open(stored) as image:
            assert image.mode == "L" and np.array_equal(np.asarray(image), first_mask)


def test_with_no_room_for_masks_none_is_stored_and_none_reused(
    tmp_path: Path, tiny_model: Path, photos: dict[str, Path]
) -> None:
    """BGREMOVER_MASK_CACHE_BYTES=0 turns keeping off: a mask written only to be evicted at
    once is a store write (an S3 put in the cluster) for nothing."""
    settings = one_worker(tmp_path, tiny_model, mask_cache_bytes=0)
    photo = photos["coffee.jpg"]
    with JobSystem(settings) as system, system.bus.subscribe() as subscription:
        first = upload(system, tmp_path, photo, MASK)
        assert "AI model" in run(system, subscription, first)
        derived = system.service.derive_job(first, RemoveOptions(format="png")).id
        assert REUSED not in run(system, subscription, derived)
        assert not mask_rows(system)
        storage = system.service.files.storage
        identity = load_remover(settings).model_identity
        assert not storage.exists(FileStore.mask_key(content_hash(system, first), identity))


def test_retention_deletes_the_mask_with_the_last_job_of_its_original(
    system: JobSystem, photos: dict[str, Path], tmp_path: Path
) -> None:
    with system.bus.subscribe() as subscription:
        first = upload(system, tmp_path, photos["coffee.jpg"], RemoveOptions())
        run(system, subscription, first)
        derived = system.service.derive_job(first, RemoveOptions(format="webp")).id
        run(system, subscription, derived)
    (kept,) = mask_rows(system)
    storage = system.service.files.storage
    system.service.delete_job(first)
    assert storage.exists(kept.key) and mask_rows(system)
    system.service.delete_job(derived)
    assert not storage.exists(kept.key) and not mask_rows(system)


# ------------------------------------------------------------- the job service on its own


REUSED_SKIPS = ("Preprocessing", "AI model")


def finish_with_mask(h: Harness, photo: Path, key: str, size: int, *, reused: bool = False) -> str:
    """An upload of ``photo`` completed by a reported run that kept the mask ``key`` of
    ``size`` bytes (written to the store here, as a worker does) or ``reused`` it; the
    job's id."""
    job = h.service.create_batch(h.uploads(photo)).jobs[0]
    item = claim(h)
    written = {item.result_key: b"result"} | ({} if reused else {key: bytes(size)})
    for written_key, data in written.items():
        path = h.service.files.storage.local_path(written_key)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    size_and_format = (600, 400, "png", 6)
    h.service.handle(
        Finished(item.job_id, item.dispatch_id, *size_and_format, STAGE_TIMINGS, key, size, reused)
    )
    assert h.service.get_job(job.id).status == "completed"
    return job.id


def content_hash(h: Harness | JobSystem, job_id: str) -> str:
    with h.service._transactions() as db:
        row = db.get(JobRow, job_id)
        assert row is not None
        return row.content_hash


def test_the_least_recently_used_masks_go_past_the_size_bound(
    tmp_path: Path, database_url: str, photos: dict[str, Path]
) -> None:
    h = build_harness(tmp_path, database_url, mask_cache_bytes=130)
    first, second, third = (FileStore.mask_key("ab" * 32, model) for model in "123")
    for key, reused in ((first, False), (second, False), (first, True), (third, False)):
        finish_with_mask(h, photos["coffee.jpg"], key, 60, reused=reused)
        h.clock.advance(seconds=1)
    storage = h.service.files.storage  # the second is the least recently used
    assert [storage.exists(key) for key in (first, second, third)] == [True, False, True]
    with h.service._transactions() as db:
        assert set(db.scalars(select(MaskRow.key))) == {first, third}


def test_a_queued_job_with_a_kept_mask_is_expected_short_and_teaches_no_model_time(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    h = build_harness(tmp_path, f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    bucket, photo = size_bucket(600, 400), photos["coffee.jpg"]
    first = h.service.create_batch(h.uploads(photo)).jobs[0]
    run_to_completion(h, claim(h))
    model_seconds = h.service.clock.expected(bucket, Stage.INFERENCE)
    full = h.service.create_batch(h.uploads(photos["chelsea.jpg"])).jobs[0]
    assert full.estimated_time_remaining is not None
    h.service.cancel_job(full.id)
    finish_with_mask(h, photo, FileStore.mask_key(content_hash(h, first.id), "m"), 10)

    queued = h.service.create_batch(h.uploads(photo)).jobs[0]
    assert queued.estimated_time_remaining is not None
    assert queued.estimated_time_remaining < full.estimated_time_remaining - 0.9 * model_seconds

    item = claim(h)
    h.service.handle(StageProgress(item.job_id, item.dispatch_id, REUSED, 1.0, time.time()))
    assert h.service.get_job(item.job_id).stage == REUSED
    reused_timings = {k: v for k, v in STAGE_TIMINGS.items() if k not in REUSED_SKIPS}
    h.service.handle(Finished(item.job_id, item.dispatch_id, 600, 400, "png", 6, reused_timings))
    assert h.service.get_job(item.job_id).status == "completed"
    assert h.service.clock.expected(bucket, Stage.INFERENCE) == model_seconds


def test_a_mask_stored_by_a_run_whose_job_was_deleted_is_not_left_behind(
    tmp_path: Path, photos: dict[str, Path]
) -> None:
    h = build_harness(tmp_path, f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    storage = h.service.files.storage
    keys = [FileStore.mask_key("ab" * 32, model) for model in ("deleted", "cancelled")]
    for key, end in zip(keys, (h.service.delete_job, h.service.cancel_job), strict=True):
        h.service.create_batch(h.uploads(photos["coffee.jpg"]))
        item = claim(h)
        end(item.job_id)
        path = storage.local_path(key)
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(10))  # the worker stored it just before its run was stopped
        h.service.handle(Finished(item.job_id, item.dispatch_id, 600, 400, "png", 6, {}, key, 10))
    assert not storage.exists(keys[0])  # nobody's: gone
    assert storage.exists(keys[1])  # its job's original is still there: kept for a retry
    with h.service._transactions() as db:
        assert list(db.scalars(select(MaskRow.key))) == [keys[1]]
