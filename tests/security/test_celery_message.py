"""A Celery worker runs what the job's row says, never what a task message claims.

Whoever can write to the broker (the Redis a deployment shares, say) can take a genuine
task message off the queue and put back a forged one with the same job and dispatch id.
Here the attacker does it with the real Celery client against a real `bgremover serve` and
a real `bgremover worker`: made-up worker slots in Redis let the web process dispatch while
no worker listens; the attacker pops every message and queues, in front of the genuine
ones, messages that name a file outside the store as the background, a file outside the
store or another user's stored original as the original, and another user's original as
the place to write the result. Every forged message must be refused; the genuine ones
that follow must run as their rows say.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from bgremover import Settings
from bgremover.workers.base import WorkerInfo, WorkItem
from bgremover.workers.celery_config import TASK, make_app
from bgremover.workers.cluster import Channels, WorkerRegistry
from bgremover.workers.messages import (
    RefusedMessage,
    check_against_row,
    invitation,
    parse,
    parse_invitation,
)

from ..cluster_support import REDIS_URL, ensure_service, worker
from ..jobs_support import postgres_database
from ..serving import UI, follow, job_ended, served

OUTSIDE_COLOUR = (255, 0, 255)
"""The outside background: the tiny model keeps none of a flat photo, so a result
composited onto it is this colour throughout."""
PHOTO_SIZE = (64, 48)
VICTIM_SIZE = (96, 72)
MESSAGE_WAIT_S = 120


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def forgeries(outside: Path, victim: dict[str, Any]) -> dict[str, Any]:
    """What the attacker changes in a genuine message, by the job's file name."""
    return {
        "background-path.png": lambda item: {
            **item, "options": {**item["options"], "background_image": str(outside / "bg.png")}
        },
        "original-path.png": lambda item: {**item, "original_key": str(outside / "private.png")},
        "original-key.png": lambda item: {**item, "original_key": victim["original_key"]},
        "result-key.png": lambda item: {**item, "result_key": victim["original_key"]},
    }  # fmt: skip


@contextmanager
def fake_slots(settings: Settings, count: int) -> Iterator[None]:
    """Worker records the attacker writes into Redis: the web process sees free slots and
    dispatches, while no worker takes the messages yet."""
    client = redis.Redis.from_url(REDIS_URL)
    registry = WorkerRegistry(client, Channels(settings.redis_namespace), heartbeat_s=60)
    names = [f"attacker/{index}" for index in range(count)]
    for index, name in enumerate(names):
        registry.beat(WorkerInfo(name, "attacker", index + 1, time.time()))
    try:
        yield
    finally:
        for name in names:
            registry.leave(name)
        client.close()


def take_messages(client: redis.Redis, queue: str, count: int) -> dict[str, tuple[bytes, Any]]:
    """Pop ``count`` messages off the broker's queue: each raw, with its work item, by job."""
    taken: dict[str, tuple[bytes, Any]] = {}
    for _ in range(count):
        popped = client.brpop([queue], timeout=MESSAGE_WAIT_S)
        assert popped is not None, f"the web process dispatched only {len(taken)} of {count}"
        raw = popped[1]
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        taken[args[0]["job_id"]] = (raw, args[0])
    return taken


def colours(data: bytes) -> set[tuple[int, ...]]:
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).reshape(-1, 3)
    return {tuple(int(c) for c in p) for p in np.unique(pixels, axis=0)}


def test_forged_task_messages_are_refused_and_nothing_outside_the_store_is_read(
    tmp_path: Path, tiny_model: Path
) -> None:
    ensure_service("redis", 6379)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "bg.png").write_bytes(png((32, 32), OUTSIDE_COLOUR))
    (outside / "private.png").write_bytes(png(VICTIM_SIZE, OUTSIDE_COLOUR))
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=tmp_path / "attacker", redis_url=REDIS_URL, redis_namespace=namespace
    )
    queue = Channels(namespace).queue
    client = redis.Redis.from_url(REDIS_URL)
    with ExitStack() as stack:
        stack.callback(client.close)
        stack.callback(lambda: [client.delete(k) for k in client.scan_iter(f"*{namespace}*")])
        env = {
            "BGREMOVER_DATABASE_URL": stack.enter_context(postgres_database()),
            "BGREMOVER_REDIS_URL": REDIS_URL,
            "BGREMOVER_REDIS_NAMESPACE": namespace,
            "BGREMOVER_STORAGE_URL": (tmp_path / "store").as_uri(),
            "BGREMOVER_MODEL_PATH": str(tiny_model),
            "BGREMOVER_WORKER_HEARTBEAT": "0.5",
        }
        names = ["victim.png", "background-path.png", "original-path.png", "original-key.png",
                 "result-key.png"]  # fmt: skip
        victim_bytes = png(VICTIM_SIZE, (0, 0, 200))
        uploads = {name: png(PHOTO_SIZE, (0, 160, 0)) for name in names} | {
            "victim.png": victim_bytes
        }
        (tmp_path / "web").mkdir()
        web, _ = stack.enter_context(served(tmp_path / "web", env=env))
        with fake_slots(settings, len(names)):
            created = httpx.post(
                f"{web}/api/batches", headers=UI, timeout=60,
                files=[("files", (name, uploads[name], "image/png")) for name in names],
            )  # fmt: skip
            assert created.status_code == 201, created.text
            jobs = {job["file_name"]: job["id"] for job in created.json()["jobs"]}
            genuine = take_messages(client, queue, len(names))
        victim = genuine[jobs["victim.png"]][1]

        attacker = make_app(settings)
        for name, forge in forgeries(outside, victim).items():
            attacker.send_task(TASK, args=[forge(genuine[jobs[name]][1])], queue=queue)
        for raw, _item in genuine.values():  # behind the forged ones: kombu pops FIFO
            client.lpush(queue, raw)

        (tmp_path / "worker").mkdir()
        stack.enter_context(worker(tmp_path / "worker", env))
        follow(web, job_ended(set(jobs.values())))

        log = (tmp_path / "worker" / "worker.log").read_text()
        wrong = [
            f"{name}: {problem}"
            for name, job_id in jobs.items()
            for problem in problems(
                web, job_id, VICTIM_SIZE if name == "victim.png" else PHOTO_SIZE
            )
        ]
        wrong += [
            f"{name}: the forged message was not refused"
            for name, job_id in jobs.items()
            if name != "victim.png" and f"job {job_id}: refused" not in log
        ]
        original = httpx.get(f"{web}/api/jobs/{jobs['victim.png']}/original", timeout=30)
        if original.content != victim_bytes:
            wrong.append("victim.png: its stored original was overwritten")
        assert not wrong, "\n".join(wrong)


def problems(web: str, job_id: str, size: tuple[int, int]) -> Iterator[str]:
    """What is wrong with a job that should have run as its row says."""
    job = httpx.get(f"{web}/api/jobs/{job_id}", timeout=30).json()
    if job["status"] != "completed":
        yield f"{job['status']}: {job['error']}"
        return
    result = httpx.get(f"{web}/api/jobs/{job_id}/result", timeout=30)
    if result.status_code != 200:
        yield f"its result is not served ({result.status_code}: {result.text[:200]})"
        return
    if Image.open(io.BytesIO(result.content)).size != size:
        yield f"its result is another image ({Image.open(io.BytesIO(result.content)).size})"
    if OUTSIDE_COLOUR in colours(result.content):
        yield "its result shows the file from outside the store"


GOOD = {
    "job_id": "ab" * 16,
    "dispatch_id": "cd" * 16,
    "original_key": "originals/ef/" + "ef" * 32,
    "result_key": "results/ab/" + "ab" * 16 + ".png",
    "background_key": "backgrounds/12/" + "12" * 32,
    "options": {"format": "png"},
    "deadline_s": 30.0,
}


@pytest.mark.parametrize(
    "change",
    [
        {"original_key": "/etc/passwd"},
        {"original_key": "originals/ef/../../../etc/passwd"},
        {"original_key": "results/ab/" + "ab" * 16 + ".png"},  # a key, but not an original
        {"result_key": "originals/ef/" + "ef" * 32},
        {"background_key": "backgrounds/12/" + "12" * 32 + "/../../x"},
        {"options": {"background_image": "/etc/hostname"}},
        {"options": "format=png"},
        {"job_id": "../" + "a" * 29},
        {"dispatch_id": 7},
        {"deadline_s": float("nan")},
        {"deadline_s": True},
        {"background_path": "/etc/hostname"},
        {"clip": "yes"},
    ],
)
def test_a_message_that_is_not_what_a_dispatcher_sends_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(RefusedMessage):
        parse({**GOOD, **change})


def test_a_well_formed_message_that_disagrees_with_the_row_is_refused() -> None:
    sent = parse(GOOD)
    row = WorkItem(**{**GOOD, "deadline_s": 99.0})  # the deadline is the dispatcher's
    check_against_row(sent, row)
    for field, value in [
        ("original_key", "originals/00/" + "00" * 32),
        ("result_key", "results/00/" + "00" * 16 + ".png"),
        ("background_key", None),
        ("options", {"format": "webp"}),
        ("clip", True),  # a clip's task has no hard time limit: a photo may not claim that
    ]:
        with pytest.raises(RefusedMessage, match=field):
            check_against_row(sent, WorkItem(**{**GOOD, field: value}))


@pytest.mark.parametrize(
    "message",
    [
        {"job_id": "ab" * 16, "dispatch_id": "../" + "c" * 29},
        {"job_id": "ab" * 16},
        {"job_id": "ab" * 16, "dispatch_id": "cd" * 16, "original_key": "/etc/passwd"},
        ["ab" * 16, "cd" * 16],
    ],
)
def test_an_invitation_to_help_with_a_clip_names_its_run_and_nothing_else(
    message: Any,
) -> None:
    """A helper reads everything else from the job's row, as a run's worker does."""
    assert parse_invitation(invitation(parse(GOOD))) == (GOOD["job_id"], GOOD["dispatch_id"])
    with pytest.raises(RefusedMessage):
        parse_invitation(message)
