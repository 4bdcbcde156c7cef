"""Clips: decoding, every output format, bad input, smoothing, and runs in real workers
(progress by frames, a kill -9 resumed at the next frame)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bgremover import Remover, Settings, load_remover, remove_clip
from bgremover.engine import InputError, RemoveOptions
from bgremover.engine.thumbnail import thumbnail
from bgremover.engine.video.clip import process_clip
from bgremover.engine.video.frames import frames
from bgremover.engine.video.probe import ClipLimits, open_clip
from bgremover.engine.video.smoothing import flicker
from bgremover.jobs.clip_progress import from_label
from bgremover.jobs.exchange import QueueState
from bgremover.jobs.snapshots import live_remaining
from bgremover.web import create_app
from bgremover.workers import Failed, Finished, Lost, StageProgress, Stopped
from bgremover.workers.celery_executor import KILL_GRACE_S, time_limit

from .conftest import SAMPLES
from .jobs_support import Harness, build_harness, claim, run_to_completion, wait_for_job
from .serving import UI
from .test_cli import run_cli
from .test_local_executor import Reports, Start, start, work  # noqa: F401 (a fixture)
from .video_support import moving_frames, still_frames, write_animation, write_mp4
from .watch_support import results, watching

LIMITS = ClipLimits(seconds=600, frames=18_000, pixels=100_000_000)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    frames = moving_frames()
    moving = write_mp4(folder / "moving.mp4", frames)
    data = moving.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "garbage.mp4").write_bytes(data[:64] + os.urandom(4000))
    return {
        "moving": moving,
        "audio": write_mp4(folder / "audio.mp4", frames, audio=True),
        "turned": write_mp4(folder / "turned.mp4", frames, rotation=90),
        "webm": write_mp4(folder / "moving.webm", frames, codec="libvpx-vp9"),
        "mkv": write_mp4(folder / "moving.mkv", frames),
        "gif": write_animation(folder / "moving.gif", frames[:8], "GIF"),
        "webp": write_animation(folder / "moving.webp", frames[:8], "WEBP"),
        "still": write_mp4(folder / "still.mp4", still_frames()),
        "truncated": folder / "truncated.mp4",
        "empty": folder / "empty.mp4",
        "garbage": folder / "garbage.mp4",
    }


@pytest.fixture(scope="module")
def tiny_remover(tiny_model: Path) -> Remover:
    return load_remover(Settings(model_path=tiny_model, device="cpu"))


def _cut(remover: Remover, source: Path, target: Path, **options: object) -> object:
    info = open_clip(source, LIMITS, name=source.name)
    return process_clip(remover, source, target, RemoveOptions(**options), info, name=source.name)


def _streams(path: Path) -> dict[str, tuple[str, int]]:
    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, s.frames) for s in container.streams}


def test_every_container_decodes_with_its_frames_and_times(clips: dict[str, Path]) -> None:
    for key in ("moving", "webm", "mkv", "gif", "webp", "audio"):
        info = open_clip(clips[key], LIMITS, name=key)
        expected = 8 if key in ("gif", "webp") else 20
        assert info.frames == expected, key
        assert (info.width, info.height) == (320, 240)
        assert info.fps == 10, key
    assert open_clip(clips["audio"], LIMITS, name="a").audio == "aac"


def test_webm_and_mov_keep_alpha_and_every_frame_time(
    clips: dict[str, Path], tiny_remover: Remover, tmp_path: Path
) -> None:
    webm = tmp_path / "out.webm"
    _cut(tiny_remover, clips["moving"], webm)
    with av.open(str(webm)) as container:
        stream = container.streams.video[0]
        assert stream.metadata.get("alpha_mode") == "1", "VP9 without its alpha channel"
        times = [frame.time for frame in container.decode(stream)]
    assert times == pytest.approx([i / 10 for i in range(20)], abs=0.002)
    mov = tmp_path / "out.mov"
    _cut(tiny_remover, clips["moving"], mov, format="mov")
    with av.open(str(mov)) as container:
        context = container.streams.video[0].codec_context
        assert context.name == "prores" and context.pix_fmt.startswith("yuva444")
    assert not list(tmp_path.glob(".*.part")), "a temporary file was left behind"


def test_mp4_gif_webp_and_zip_results(
    clips: dict[str, Path], tiny_remover: Remover, tmp_path: Path
) -> None:
    mp4 = tmp_path / "out.mp4"
    _cut(tiny_remover, clips["audio"], mp4, format="mp4", background_color="#0000ff")
    assert _streams(mp4)["video"] == ("h264", 20)
    assert _streams(mp4)["audio"][0] == "aac", "the sound was not copied"
    webm = tmp_path / "sound.webm"
    _cut(tiny_remover, clips["audio"], webm)
    assert _streams(webm)["audio"][0] == "opus", "AAC is re-encoded for WebM"
    for fmt in ("gif", "webp"):
        path = tmp_path / f"out.{fmt}"
        _cut(tiny_remover, clips["gif"], path, format=fmt)
        with Image.open(path) as image:
            assert image.n_frames == 8 and image.size == (320, 240)
    masks = tmp_path / "masks.zip"
    _cut(tiny_remover, clips["moving"], masks, format="mask")
    with zipfile.ZipFile(masks) as archive:
        names = archive.namelist()
        assert len(names) == 20 and names[0] == "frame-000001.png"
        with archive.open(names[0]) as first, Image.open(first) as mask:
            assert mask.mode == "L"


def test_rotation_is_applied(clips: dict[str, Path], tiny_remover: Remover, tmp_path: Path) -> None:
    info = open_clip(clips["turned"], LIMITS, name="turned")
    assert (info.width, info.height, info.rotation) == (240, 320, 90)
    result = _cut(tiny_remover, clips["turned"], tmp_path / "out.webm")
    assert (result.width, result.height) == (240, 320)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "code", "words"),
    [
        ("empty", "empty_file", "empty"),
        ("truncated", "corrupt_image", "truncated or corrupt"),
        ("garbage", "corrupt_image", "truncated or corrupt"),
    ],
)
def test_bad_clips_fail_with_the_reason(
    clips: dict[str, Path], tiny_remover: Remover, tmp_path: Path, key: str, code: str,
    words: str,
) -> None:  # fmt: skip
    with pytest.raises(InputError) as caught:
        _cut(tiny_remover, clips[key], tmp_path / "out.webm")
    assert caught.value.code == code
    assert words in caught.value.message and clips[key].name in caught.value.message


def test_limits_name_the_setting(clips: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="BGREMOVER_MAX_VIDEO_FRAMES"):
        open_clip(clips["moving"], replace(LIMITS, frames=10), name="moving.mp4")
    with pytest.raises(InputError, match="BGREMOVER_MAX_VIDEO_SECONDS"):
        open_clip(clips["moving"], replace(LIMITS, seconds=1), name="moving.mp4")
    with pytest.raises(InputError, match="BGREMOVER_MAX_IMAGE_PIXELS"):
        open_clip(clips["moving"], replace(LIMITS, pixels=320 * 200), name="moving.mp4")


@pytest.mark.parametrize(
    ("limit", "setting"),
    [({"frames": 10}, "FRAMES"), ({"seconds": 1}, "SECONDS"), ({"pixels": 320 * 200}, "PIXELS")],
)
def test_decoding_stops_at_the_limits_whatever_the_header_said(
    clips: dict[str, Path], limit: dict[str, int], setting: str
) -> None:
    """A header can lie (a count of 10 frames over millions, small sides over large ones):
    the frames decoded are held to the limits too, each frame's size before it is copied."""
    info = open_clip(clips["moving"], LIMITS, name="moving.mp4")
    lying = replace(info, limits=replace(LIMITS, **limit))  # what a lying header lets pass
    with pytest.raises(InputError, match=f"BGREMOVER_MAX_(VIDEO|IMAGE)_{setting}"):
        for _ in frames(clips["moving"], lying, name="moving.mp4"):
            pass


@pytest.mark.parametrize("kind", ["moving", "gif"])
def test_a_poster_over_the_pixel_limit_is_refused_before_its_frame_is_decoded(
    clips: dict[str, Path], kind: str
) -> None:
    """A thumbnail runs in the web process: a clip whose header claims huge frames must not
    make it allocate them (as a photo over BGREMOVER_MAX_IMAGE_PIXELS does not)."""
    with pytest.raises(InputError, match="BGREMOVER_MAX_IMAGE_PIXELS"):
        thumbnail(clips[kind], 64, max_pixels=320 * 240 - 1)
    assert Image.open(io.BytesIO(thumbnail(clips[kind], 64, max_pixels=320 * 240))).size[0] == 64


def test_temporal_smoothing_lowers_flicker_on_a_still_camera(
    clips: dict[str, Path], tiny_remover: Remover, tmp_path: Path
) -> None:
    measured = {}
    for smoothing in (False, True):
        target = tmp_path / f"masks-{smoothing}.zip"
        _cut(tiny_remover, clips["still"], target, format="mask", temporal_smoothing=smoothing)
        with zipfile.ZipFile(target) as archive:
            masks = [Image.open(archive.open(name)) for name in sorted(archive.namelist())]
            measured[smoothing] = flicker(masks)
    print(f"flicker without smoothing {measured[False]:.5f}, with {measured[True]:.5f}")
    assert measured[True] < measured[False] * 0.7


def _frame_reports(reports: Reports, job_id: str) -> list[StageProgress]:
    return [r for r in reports.of(job_id) if isinstance(r, StageProgress) and r.frames]


def test_a_worker_runs_a_clip_with_progress_by_frames(
    start: Start,  # noqa: F811 (the fixture of test_local_executor)
    clips: dict[str, Path],
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    executor, reports = start(Settings(model_path=tiny_model), workers=1)
    item = work("c", clips["moving"], tmp_path)
    executor.submit(item)
    final = reports.final("c")
    assert isinstance(final, Finished), final
    assert final.format == "webm" and final.frames_run == 20
    assert (tmp_path / item.result_key.replace(".png", ".webm")).stat().st_size == final.bytes
    frames = _frame_reports(reports, "c")
    assert frames[0].stage == "frame 1 of 20" and frames[0].fraction == 0
    assert frames[-1].stage == "frame 20 of 20" and frames[-1].fraction == 1
    assert [r.frame_seconds is not None for r in frames].index(True) == 3

    # A photo in the same batch options gets the still format: a PNG, under its own key.
    photo = replace(work("p", SAMPLES / "coffee.jpg", tmp_path), options={"format": "webm"})
    executor.submit(photo)
    final = reports.final("p")
    assert isinstance(final, Finished) and final.format == "png", final
    assert (tmp_path / photo.result_key).with_suffix(".png").is_file()


def test_a_clip_killed_mid_way_resumes_at_the_next_frame(
    start: Start,  # noqa: F811 (the fixture of test_local_executor)
    clips: dict[str, Path],
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    executor, reports = start(Settings(model_path=tiny_model), workers=1)
    item = work("k", clips["moving"], tmp_path)
    executor.submit(item)
    reached = reports.wait_for(
        lambda r: r.job_id == "k" and isinstance(r, StageProgress) and r.fraction >= 0.25
    )
    done = round(reached.fraction * 20)  # type: ignore[attr-defined]
    os.kill(executor.worker_pids()[next(iter(executor.worker_pids()))], signal.SIGKILL)
    assert isinstance(reports.final("k"), Lost)
    reports.wait_freed(2)  # the replacement has loaded its model
    executor.submit(replace(item, dispatch_id="0" * 32))
    final = reports.wait_for(lambda r: r.dispatch_id == "0" * 32 and isinstance(r, Finished))
    redone = final.frames_run - (20 - done)  # type: ignore[attr-defined]
    assert redone <= 1, f"{redone} frames done before the kill were run again"
    assert checkpoints(tmp_path) == [], "the finished clip's frame masks stay in the store"


def checkpoints(store: Path) -> list[Path]:
    """The masks kept in the local store at ``store`` (frame checkpoints, here)."""
    return sorted((store / "masks").rglob("*.png"))


def test_a_clip_job_shows_its_frame_its_percent_by_frames_and_its_own_pace(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    h = build_harness(tmp_path, f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    batch = h.service.create_batch(h.uploads(clips["moving"]))
    item = claim(h)
    job_id = batch.jobs[0].id

    def frame(done: int, pace: float | None) -> None:
        h.service.handle(
            StageProgress(
                item.job_id, item.dispatch_id, f"frame {done + 1} of 20", done / 20,
                time.time(), frames=20, frame_seconds=pace,
            )
        )  # fmt: skip

    frame(0, None)
    job = h.service.get_job(job_id)
    assert job.stage == "frame 1 of 20" and job.progress == 0
    frame(5, 0.5)
    live = h.service._live[item.job_id]  # the held run, as the ETA reads it
    assert live.percent == 25
    assert live_remaining(live, h.service.clock) == pytest.approx(15 * 0.5)


def test_a_clip_task_has_no_hard_time_limit_and_a_photo_task_its_deadline(
    tmp_path: Path, clips: dict[str, Path], photos: dict[str, Path]
) -> None:
    """Celery's time_limit is fixed when a task is sent: one sized for a photo would kill a
    clip of a few seconds (its local deadline is re-armed at each frame instead)."""
    h = build_harness(tmp_path, f"sqlite:///{tmp_path / 'jobs.sqlite3'}")
    h.service.create_batch(h.uploads(clips["moving"]))
    clip = claim(h)
    h.service.create_batch(h.uploads(photos["coffee.jpg"]))
    photo = claim(h)
    assert (clip.clip, photo.clip) == (True, False)
    assert time_limit(clip) is None
    assert photo.deadline_s is not None
    assert time_limit(photo) == photo.deadline_s + KILL_GRACE_S


def test_cli_remove_cuts_clips_beside_photos(
    clips: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for key in ("moving", "gif", "garbage"):
        shutil.copyfile(clips[key], folder / clips[key].name)
    shutil.copyfile(SAMPLES / "coffee.jpg", folder / "coffee.jpg")
    done = run_cli("remove", folder, env={"BGREMOVER_MODEL_PATH": str(tiny_model)})
    lines = {Path(line.split("\t")[0]).name: line.split("\t") for line in done.stdout.splitlines()}
    # Sorted, the GIF comes first: the MP4 keeps its extension in its name (no collision).
    assert lines["moving.mp4"][1:3] == ["done", str(folder / "moving-mp4-no-bg.webm")]
    assert lines["moving.gif"][1:3] == ["done", str(folder / "moving-no-bg.webm")]
    assert lines["coffee.jpg"][1:3] == ["done", str(folder / "coffee-no-bg.png")]
    assert lines["garbage.mp4"][1] == "failed" and "truncated or corrupt" in lines["garbage.mp4"][2]
    assert done.returncode == 1


def test_python_api_cuts_a_clip(clips: dict[str, Path], tiny_model: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = remove_clip(
        clips["gif"], tmp_path / "out.gif", format="gif",
        settings=Settings(model_path=tiny_model), progress=lambda d, n: seen.append((d, n)),
    )  # fmt: skip
    assert result.frames == 8 and seen[0] == (0, 8) and seen[-1] == (8, 8)


def test_a_clip_uploaded_over_http_plays_as_webm_with_a_poster(
    clips: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, model_path=tiny_model, max_concurrent_jobs=1)
    with TestClient(create_app(settings), base_url="http://localhost", headers=UI) as client:
        files = [("files", ("clip.mp4", clips["audio"].read_bytes(), "video/mp4"))]
        created = client.post("/api/batches", files=files)
        assert created.status_code == 201, created.text
        job_id = created.json()["jobs"][0]["id"]
        stages: list[str] = []

        def ended(job: dict[str, Any]) -> bool:
            stages.append(job["stage"] or "")
            return job["status"] not in ("pending", "processing")

        job = wait_for_job(client, job_id, ended)
        assert job["status"] == "completed", job
        assert job["result"]["format"] == "webm"
        result = client.get(f"/api/jobs/{job_id}/result")
        assert result.headers["content-type"] == "video/webm"
        assert _streams_of(result.content, tmp_path)["audio"][0] == "opus"
        for kind in ("original", "result"):
            poster = client.get(f"/api/jobs/{job_id}/thumbnail", params={"of": kind, "size": 128})
            assert poster.status_code == 200, poster.text
            assert Image.open(io.BytesIO(poster.content)).size == (128, 96)


def _streams_of(data: bytes, folder: Path) -> dict[str, tuple[str, int]]:
    path = folder / "downloaded.webm"
    path.write_bytes(data)
    return _streams(path)


def test_a_clip_run_by_another_process_is_priced_by_its_frames_left() -> None:
    clip = from_label("frame 5 of 20")
    assert clip is not None and (clip.frames, clip.done) == (20, 4)
    assert clip.remaining(0.5) == pytest.approx(16 * 0.5)
    assert from_label("AI model") is None


def test_a_watched_folder_turns_clips_into_webm(
    clips: dict[str, Path], tmp_path: Path, local_env: dict[str, str]
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    shutil.copyfile(clips["moving"], folder / "walk.mp4")
    shutil.copyfile(clips["gif"], folder / "wave.gif")
    with watching(folder, env=local_env) as watch:
        watch.wait_for("done    walk.mp4")
        watch.wait_for("done    wave.gif")
        watch.stop()
    assert results(folder / "no-bg") == ["walk-no-bg.webm", "wave-no-bg.webm"]


def test_a_cancelled_clip_stops_within_a_frame_and_leaves_no_file(
    start: Start,  # noqa: F811 (the fixture of test_local_executor)
    clips: dict[str, Path],
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    executor, reports = start(Settings(model_path=tiny_model), workers=1)
    item = work("x", clips["moving"], tmp_path)
    executor.submit(item)
    reports.wait_for(lambda r: isinstance(r, StageProgress) and r.fraction >= 0.1)
    executor.cancel("x")
    assert isinstance(reports.final("x"), Stopped)
    after = [r for r in reports.of("x") if isinstance(r, StageProgress)]
    frames_after_cancel = sum(1 for r in after if r.fraction >= 0.1) - 1
    assert frames_after_cancel <= 1, f"{frames_after_cancel} frames finished after the cancel"
    results_folder = (tmp_path / item.result_key).parent
    assert not results_folder.exists() or not any(results_folder.iterdir()), "a partial file"
    assert checkpoints(tmp_path) == [], "a cancelled clip's frame masks stay in the store"


def test_a_clip_weighs_in_its_batch_by_its_frames(
    harness: Harness, clips: dict[str, Path], photos: dict[str, Path]
) -> None:
    """A batch of ten photos and one 20-frame clip of the same size bucket: the clip is
    twenty photos' work in its ETA, its batch's ETA and its batch's bar, not one."""
    h = harness
    created = h.service.create_batch(h.uploads(*[photos["coffee.jpg"]] * 10, clips["moving"]))
    *photo_jobs, clip = created.jobs
    clock, slots = h.service.clock, h.settings.max_concurrent_jobs
    one = clock.job_seconds(0)
    assert (clip.width, clip.height) == (320, 240)
    assert clip.estimated_time_remaining == pytest.approx(
        20 * clock.job_seconds(0, 320 * 240), abs=0.05
    )
    batch = h.service.get_batch(created.batch.id)
    assert batch.work_seconds == pytest.approx(30 * one, abs=0.05)
    assert batch.estimated_time_remaining is not None
    assert batch.estimated_time_remaining >= 30 * one / slots - 0.05
    assert batch.estimated_time_remaining >= 20 * one - 0.05, "the clip runs on one worker"

    for _ in photo_jobs:
        run_to_completion(h, claim(h))
    one = clock.job_seconds(0)  # as the runs taught it
    batch = h.service.get_batch(created.batch.id)
    assert batch.counts.completed == 10
    assert batch.progress == pytest.approx(100 * 10 / 30, abs=0.5)
    # One worker runs the clip's frames, however many slots there are.
    assert slots > 1
    assert batch.estimated_time_remaining == pytest.approx(20 * one, abs=0.05)

    item = claim(h)  # the clip: before its first frame, all its frames are to go
    assert item.job_id == clip.id
    assert h.service.get_job(clip.id).estimated_time_remaining == pytest.approx(
        20 * clock.job_seconds(0, 320 * 240), abs=0.05
    )
    run_to_completion(h, item, size=(320, 240))
    batch = h.service.get_batch(created.batch.id)
    assert batch.progress == 100 and batch.work_done_seconds == batch.work_seconds


def test_in_the_cluster_a_waiting_clip_is_priced_as_shared_out_in_chunks(
    tmp_path: Path, database_url: str, clips: dict[str, Path], photos: dict[str, Path]
) -> None:
    """Celery workers share a long clip out in chunks: its batch's ETA spreads all but one
    chunk over the slots, where one local worker would run all 20 frames itself."""
    h = build_harness(tmp_path, database_url, clip_chunk_frames=5)
    h.service.attach(cancel_running=h.cancels.append, wake=lambda: None, runs_elsewhere=True)
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], clips["moving"]))
    run_to_completion(h, claim(h))
    one, slots = h.service.clock.job_seconds(0), h.settings.max_concurrent_jobs
    assert slots == 2
    batch = h.service.get_batch(created.batch.id)
    expected = (20 - 5) * one / slots + 5 * one  # the chunks but one over the slots, then it
    assert batch.estimated_time_remaining == pytest.approx(expected, abs=0.05)


def test_a_clip_keeps_its_weight_through_a_retry_and_an_export(
    harness: Harness, clips: dict[str, Path], photos: dict[str, Path], tmp_path: Path
) -> None:
    h = harness
    created = h.service.create_batch(h.uploads(photos["coffee.jpg"], clips["moving"]))
    run_to_completion(h, claim(h))
    item = claim(h)
    h.service.handle(Failed(item.job_id, item.dispatch_id, "boom", "failed"))
    h.service.retry_job(item.job_id)  # the new attempt takes the old one's frames
    one = h.service.clock.job_seconds(0)
    batch = h.service.get_batch(created.batch.id)
    assert batch.work_seconds == pytest.approx(21 * one, abs=0.05)
    assert batch.work_done_seconds == pytest.approx(one, abs=0.05)

    state = QueueState.model_validate(h.service.export_state())
    assert sorted(job.frames or 1 for job in state.jobs) == [1, 20, 20]
    other = build_harness(tmp_path / "other", f"sqlite:///{tmp_path / 'other.sqlite3'}")
    other.service.import_state(state)
    moved = other.service.get_batch(created.batch.id)
    assert moved.work_seconds == pytest.approx(21 * other.service.clock.job_seconds(0), abs=0.05)
