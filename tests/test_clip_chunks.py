"""A long clip in the cluster: its frames split into chunks that several Celery workers run
at once (each mask checkpointed in the shared store), then composited and encoded once by
the worker holding the job's run. Two real `bgremover worker` processes, a real web
process, PostgreSQL and Redis; a model slow enough that both workers get chunks."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from bgremover import Settings, load_remover
from bgremover.engine import RemoveOptions
from bgremover.engine.video.clip import process_clip
from bgremover.engine.video.probe import ClipLimits, open_clip
from bgremover.storage.local import LocalStorage
from bgremover.workers.base import MAX_CHUNKS, chunk_size
from bgremover.workers.chunks import ChunkPlan, ChunkSharing, PlanGone, chunk_bounds
from bgremover.workers.clips import MASKS_SHARE, clip_result_key, run_clip

from .cluster_support import (
    REDIS_URL,
    Listener,
    cluster_web,
    ensure_service,
    job_end,
    jobs_seen,
    worker,
)
from .serving import UI, free_port
from .test_local_executor import work
from .video_support import moving_frames, write_mp4
from .waiting import until

FRAMES = 20
CHUNK = 4
WAIT_S = 240.0
MADE = re.compile(r"masks made by (\{.*?\})")


@dataclass
class Cluster:
    url: str
    listener: Listener
    roots: list[Path]
    workers: list[Any]
    namespace: str

    def logs(self) -> str:
        return "".join((root / "worker.log").read_text() for root in self.roots)

    def masks_made(self) -> dict[str, int]:
        """The masks each worker has made so far for the running chunked clip (Redis)."""
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(f"{self.namespace}:chunks:*:made"))
            made = client.hgetall(keys[0]) if keys else {}
            return {k.decode(): int(v) for k, v in made.items()}
        finally:
            client.close()

    def stats_workers(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = httpx.get(f"{self.url}/api/stats", timeout=30).json()[
            "workers"
        ]
        return answer


@pytest.fixture
def cluster(tmp_path: Path, slow_tiny_model: Path) -> Iterator[Cluster]:
    ensure_service("redis", 6379)
    with ExitStack() as stack:
        url, env, listener = stack.enter_context(
            cluster_web(
                tmp_path,
                REDIS_URL,
                slow_tiny_model,
                BGREMOVER_CLIP_CHUNK_FRAMES=str(CHUNK),
                BGREMOVER_LEASE_DURATION="4",
                BGREMOVER_WORKER_HEARTBEAT="0.5",
            )
        )
        namespace = env["BGREMOVER_REDIS_NAMESPACE"]
        roots = [tmp_path / f"worker-{name}" for name in "ab"]
        workers = []
        for root in roots:
            root.mkdir()
            workers.append(stack.enter_context(worker(root, env)))
        until(
            lambda: httpx.get(f"{url}/api/health", timeout=10).json()["workers"],
            lambda count: count >= 2,
            WAIT_S,
            "two workers ready",
        )
        yield Cluster(url, listener, roots, workers, namespace)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chunked")
    return write_mp4(folder / "long.mp4", moving_frames(FRAMES))


def _upload(cluster: Cluster, clip: Path) -> str:
    files = [("files", (clip.name, clip.read_bytes(), "video/mp4"))]
    created = httpx.post(
        f"{cluster.url}/api/batches", files=files, data={"format": "zip"}, headers=UI, timeout=60
    )
    assert created.status_code == 201, created.text
    job_id: str = created.json()["jobs"][0]["id"]
    return job_id


def _helpers(cluster: Cluster, job_id: str) -> list[dict[str, Any]]:
    """The workers /api/stats shows running ``job_id`` (its holder and its helpers)."""
    return [w for w in cluster.stats_workers() if w["job_id"] == job_id]


def _alphas(archive: bytes) -> list[np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(archive)) as files:
        names = sorted(n for n in files.namelist() if n.endswith(".png"))
        return [np.asarray(Image.open(io.BytesIO(files.read(n))).getchannel("A")) for n in names]


def _made(cluster: Cluster) -> dict[str, int]:
    found = MADE.search(cluster.logs())
    assert found, "the run did not say who made the masks"
    made: dict[str, int] = json.loads(found[1])
    return made


def test_a_long_clip_runs_in_chunks_on_two_workers_and_matches_one_worker(
    cluster: Cluster, clip: Path, slow_tiny_model: Path, tmp_path: Path
) -> None:
    job_id = _upload(cluster, clip)
    job = cluster.listener.wait_for("the clip's end", job_end(job_id))
    assert job["status"] == "completed", job
    made = _made(cluster)
    assert len(made) == 2 and all(count > 0 for count in made.values()), made
    assert sum(made.values()) == FRAMES, made
    percents = [
        e["data"]["progress"]
        for e in cluster.listener.events
        if e["event"] == "job.progress" and e["data"]["id"] == job_id
    ]
    assert percents == sorted(percents), "the percent went back"

    result = httpx.get(f"{cluster.url}/api/jobs/{job_id}/result", timeout=30)
    assert result.status_code == 200
    chunked = _alphas(result.content)
    alone = tmp_path / "alone.zip"
    remover = load_remover(Settings(model_path=slow_tiny_model, device="cpu"))
    limits = ClipLimits(seconds=600, frames=1000, pixels=10_000_000)
    info = open_clip(clip, limits, name=clip.name)
    process_clip(remover, clip, alone, RemoveOptions(format="zip"), info, name=clip.name)
    expected = _alphas(alone.read_bytes())
    assert len(chunked) == len(expected) == FRAMES
    for index, (got, want) in enumerate(zip(chunked, expected, strict=True)):
        difference = np.abs(got.astype(int) - want.astype(int)).mean()
        assert difference < 1.0, f"frame {index}: alpha differs by {difference:.2f} on average"


def test_cancelling_a_chunked_clip_stops_every_worker(cluster: Cluster, clip: Path) -> None:
    job_id = _upload(cluster, clip)
    until(cluster.masks_made, lambda made: len(made) == 2, WAIT_S, "both workers making masks")
    holder_and_helper = [False, True]  # each worker on the job: whether it only helps
    until(lambda: sorted(w["helps"] for w in _helpers(cluster, job_id)),
          lambda helps: helps == holder_and_helper, WAIT_S,
          "/api/stats showing the clip's holder and its helper")  # fmt: skip
    answer = httpx.post(f"{cluster.url}/api/jobs/{job_id}/cancel", headers=UI, timeout=30)
    assert answer.status_code == 200, answer.text
    job = cluster.listener.wait_for("the clip's end", job_end(job_id))
    assert job["status"] == "cancelled"
    until(lambda: _helpers(cluster, job_id), lambda running: not running, WAIT_S,
          "no worker on the cancelled clip")  # fmt: skip
    assert "stopped helping: the clip was cancelled" in cluster.logs()


def test_a_helper_killed_mid_chunk_redoes_at_most_its_chunk(cluster: Cluster, clip: Path) -> None:
    job_id = _upload(cluster, clip)
    holder = cluster.listener.wait_for(
        "the clip taken over", lambda seen: (jobs_seen(seen).get(job_id) or {}).get("worker")
    )
    made = until(cluster.masks_made, lambda made: len(made) == 2, WAIT_S, "a helper's mask")
    helper = next(name for name in made if f"(pid {name.rsplit('/', 1)[1]})" not in holder)
    os.kill(int(helper.rsplit("/", 1)[1]), signal.SIGKILL)
    job = cluster.listener.wait_for("the clip's end", job_end(job_id))
    assert job["status"] == "completed", job
    assert job["attempt"] == 1, "the job's run was lost with its helper"
    made = _made(cluster)
    assert made[helper] >= 1, made
    # Each frame's mask was made once, bar the frame the helper was on when it died.
    assert FRAMES - 1 <= sum(made.values()) <= FRAMES, made
    result = httpx.get(f"{cluster.url}/api/jobs/{job_id}/result", timeout=30)
    assert len(_alphas(result.content)) == FRAMES


def test_a_photo_queued_behind_a_chunked_clip_takes_a_helper_at_its_chunks_end(
    cluster: Cluster, clip: Path, tmp_path: Path
) -> None:
    clip_id = _upload(cluster, clip)
    until(cluster.masks_made, lambda made: len(made) == 2, WAIT_S, "a helper making masks")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((120, 160, 3), 200, dtype=np.uint8)).save(photo)
    files = [("files", (photo.name, photo.read_bytes(), "image/png"))]
    created = httpx.post(f"{cluster.url}/api/batches", files=files, headers=UI, timeout=60)
    assert created.status_code == 201, created.text
    photo_id = created.json()["jobs"][0]["id"]
    done = cluster.listener.wait_for("the photo's end", job_end(photo_id))
    assert done["status"] == "completed", done
    # When the photo ended, the clip's masks were still being made (MASKS_SHARE of its
    # percent): the photo did not wait for the clip's chunks to run out.
    percents = [
        e["data"]["progress"]
        for e in list(cluster.listener.events)
        if e["event"] == "job.progress" and e["data"]["id"] == clip_id
    ]
    assert percents and percents[-1] < 100 * MASKS_SHARE, percents
    job = cluster.listener.wait_for("the clip's end", job_end(clip_id))
    assert job["status"] == "completed", job


def test_a_chunk_whose_claim_lapsed_is_claimed_again_and_done_ones_never() -> None:
    ensure_service("redis", 6379)
    client = redis.Redis.from_url(REDIS_URL)
    plan = ChunkPlan(client, f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, 10, 4)
    try:
        plan.publish()
        assert plan.chunks == [(0, 4), (4, 8), (8, 10)]
        assert plan.claim("a", lease_s=60) == 0
        assert plan.claim("b", lease_s=0.2) == 1
        plan.finish(0)
        assert plan.claim("c", lease_s=60) == 2
        # b died: its claim lapses, and chunk 1 alone is claimed again.
        assert until(lambda: plan.claim("c", lease_s=60), lambda got: got is not None,
                     WAIT_S, "b's claim lapsing") == 1  # fmt: skip
        assert plan.claim("d", lease_s=60) is None
        plan.remove()
        with pytest.raises(PlanGone):
            plan.frame_done(1, 4, "c", made=True, lease_s=60)
    finally:
        plan.remove()
        client.close()


def test_without_redis_the_holder_makes_every_mask_itself(
    clip: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Redis only coordinates: a clip run whose Redis is gone plans no chunk, invites no one
    and cuts every frame itself."""
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    invited: list[int] = []
    sharing = ChunkSharing(
        redis=dead, namespace="test", worker="here", lease_s=4, chunk_frames=CHUNK,
        idle_workers=lambda: 1, invite=lambda item, count: invited.append(count),
    )  # fmt: skip
    store = LocalStorage(tmp_path / "store")
    item = replace(work("c", clip, store.root), options={"format": "zip"})
    remover = load_remover(Settings(model_path=tiny_model, device="cpu"))
    limits = ClipLimits(seconds=600, frames=1000, pixels=10_000_000)
    folder = tmp_path / "scratch"
    folder.mkdir()
    source = store.root / item.original_key
    finished = run_clip(
        item, remover, store, folder, source, limits, send=None, cancel=None, chunks=sharing
    )
    assert finished.frames_run == FRAMES and invited == []
    result = store.local_path(clip_result_key(item.result_key, RemoveOptions(format="zip")))
    assert result is not None and len(_alphas(result.read_bytes())) == FRAMES


def test_a_long_clip_is_shared_out_in_a_bounded_number_of_chunks() -> None:
    """Each helper decodes the clip from its start up to its chunk: a 10-minute clip in
    chunks of 25 frames would be decoded hundreds of times over."""
    assert chunk_size(40, 25) == 25  # a short clip: the setting's chunks
    for frames in (18_000, 1_601, 401):
        chunks = chunk_bounds(frames, chunk_size(frames, 25))
        assert len(chunks) <= MAX_CHUNKS
        assert chunks[-1][1] == frames and all(a < b for a, b in chunks)


def test_a_plan_that_is_not_the_clips_is_not_followed() -> None:
    """Whoever can write to Redis could plant a plan for a running clip's dispatch: a
    helper follows only one that counts the frames its own copy of the clip has, in
    chunks of at least one frame (a planted million-chunk plan costs it nothing)."""
    ensure_service("redis", 6379)
    client = redis.Redis.from_url(REDIS_URL)
    namespace, dispatch_id = f"test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    key = f"{namespace}:chunks:{dispatch_id}"
    try:
        assert ChunkPlan.find(client, namespace, dispatch_id, FRAMES) is None  # none yet
        for planted in (
            {"frames": 1_000_000, "size": 1},
            {"frames": FRAMES, "size": 0},
            {"frames": FRAMES, "size": "4"},
            ["not", "a", "plan"],
        ):
            client.set(key, json.dumps(planted))
            assert ChunkPlan.find(client, namespace, dispatch_id, FRAMES) is None, planted
        client.set(key, json.dumps({"frames": FRAMES, "size": CHUNK}))
        plan = ChunkPlan.find(client, namespace, dispatch_id, FRAMES)
        assert plan is not None and len(plan.chunks) == FRAMES // CHUNK
    finally:
        client.delete(key)
        client.close()
