"""A long clip in the cluster, shared out in chunks of frames.

The frame checkpoints (``clips.FrameMasks``) are where the workers meet. The worker that
holds the clip's run (its coordinator: take-over, lease and dispatch id as for any run)
splits the frames into chunks, writes the plan in Redis under the run's dispatch id, and
invites idle workers with a ``CHUNK_TASK`` message that names the run and nothing else. Each
worker on the clip (the coordinator too) claims the next unclaimed chunk (``SET NX`` with a
lease, renewed at each frame), puts each of its frames through the model and checkpoints
the mask. A claim whose lease lapsed (its helper died) is claimed again, and the frames
already checkpointed are skipped: a lost chunk re-runs alone. Once every chunk is done the
coordinator composites and encodes the clip once, finding every mask kept.

Redis only coordinates: if it fails mid-clip the coordinator makes the missing masks itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import CancelToken, OutputFormat, RemoveOptions, Remover
from ..engine.video.probe import ClipInfo
from .base import WorkItem, chunk_size

if TYPE_CHECKING:
    from ..engine.video.clip import MaskCheckpoints

log = logging.getLogger(__name__)

WAIT_S = 0.2
"""How often a coordinator with no chunk left to claim looks at the others' progress."""
PLAN_TTL_S = 24 * 3600
"""A plan outlives no clip by long: the coordinator deletes it; this bounds a dead one's."""

AfterFrame = Callable[[int, bool], None]
"""Called after each frame of a chunk with its index and whether the model ran on it."""


class PlanGone(Exception):
    """The clip's coordinator removed its plan (the run ended): helpers stop."""


def chunk_bounds(frames: int, size: int) -> list[tuple[int, int]]:
    """The chunks of a clip of ``frames``: ``[start, end)`` ranges of ``size`` frames."""
    return [(start, min(start + size, frames)) for start in range(0, frames, size)]


class ChunkPlan:
    """One clip run's chunks in Redis, under ``namespace:chunks:<dispatch id>``: the plan,
    each chunk's claim (the claiming worker's name, with a lease), the chunks done, each
    chunk's frames done (the job's percent), and the masks each worker made."""

    def __init__(
        self, redis: Any, namespace: str, dispatch_id: str, frames: int, size: int
    ) -> None:
        self._redis = redis
        self.key = _plan_key(namespace, dispatch_id)
        self.frames = frames
        self.size = size
        self.chunks = chunk_bounds(frames, size)

    @staticmethod
    def published(redis: Any, namespace: str, dispatch_id: str) -> bool:
        """Whether run ``dispatch_id``'s coordinator keeps a plan (a helper asks before it
        fetches the clip)."""
        return bool(redis.exists(_plan_key(namespace, dispatch_id)))

    @classmethod
    def find(cls, redis: Any, namespace: str, dispatch_id: str, frames: int) -> ChunkPlan | None:
        """The plan of run ``dispatch_id``, while its coordinator keeps it, when it is one for
        a clip of ``frames`` (the helper's own count of the clip) in chunks of at least one
        frame; None otherwise. Redis is no boundary: a planted plan must not make a helper
        walk a million chunks or divide by a zero-frame one."""
        stored = redis.get(_plan_key(namespace, dispatch_id))
        try:
            plan = json.loads(stored) if stored is not None else None
            size = plan["size"] if isinstance(plan, dict) and plan.get("frames") == frames else 0
        except ValueError:
            size = 0
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            if stored is not None:
                log.warning("plan %s is not one for this clip; not followed", stored[:200])
            return None
        return cls(redis, namespace, dispatch_id, frames, size)

    def _claim_key(self, index: int) -> str:
        return f"{self.key}:claim:{index}"

    def publish(self) -> None:
        self._redis.set(
            self.key, json.dumps({"frames": self.frames, "size": self.size}), ex=PLAN_TTL_S
        )

    def exists(self) -> bool:
        return bool(self._redis.exists(self.key))

    def claim(self, worker: str, lease_s: float) -> int | None:
        """Atomically take the first chunk neither done nor claimed (a lapsed claim is no
        claim); None when there is none."""
        done = {int(i) for i in self._redis.smembers(f"{self.key}:done")}
        for index in range(len(self.chunks)):
            if index in done:
                continue
            if self._redis.set(self._claim_key(index), worker, nx=True, px=int(lease_s * 1000)):
                return index
        return None

    def release(self, index: int) -> None:
        """Give a chunk up unfinished: the next claim takes it at once."""
        self._redis.delete(self._claim_key(index))

    def frame_done(self, index: int, through: int, worker: str, made: bool, lease_s: float) -> None:
        """Frames ``start..through`` of chunk ``index`` have their masks: say so, and keep
        the chunk ``worker``'s for another lease (one round trip a frame)."""
        start, _ = self.chunks[index]
        pipe = self._redis.pipeline()
        pipe.exists(self.key)
        pipe.set(self._claim_key(index), worker, xx=True, px=int(lease_s * 1000))
        pipe.hset(f"{self.key}:progress", str(index), through + 1 - start)
        if made:
            pipe.hincrby(f"{self.key}:made", worker, 1)
        for suffix in (":progress", ":made"):  # a plan removed meanwhile leaves nothing long
            pipe.expire(self.key + suffix, PLAN_TTL_S)
        if not pipe.execute()[0]:
            raise PlanGone(f"the plan {self.key} is gone: its clip ended")

    def finish(self, index: int) -> None:
        pipe = self._redis.pipeline()
        pipe.sadd(f"{self.key}:done", index)
        pipe.expire(f"{self.key}:done", PLAN_TTL_S)
        pipe.delete(self._claim_key(index))
        pipe.execute()

    def all_done(self) -> bool:
        return int(self._redis.scard(f"{self.key}:done")) >= len(self.chunks)

    def frames_done(self) -> int:
        """Frames with their mask, across every chunk (a chunk re-run counts again from
        its start: readers keep the highest count they saw)."""
        return sum(int(v) for v in self._redis.hvals(f"{self.key}:progress"))

    def made(self) -> dict[str, int]:
        """The masks each worker made, by worker name."""
        stored = self._redis.hgetall(f"{self.key}:made")
        return {k.decode(): int(v) for k, v in stored.items()}

    def remove(self) -> None:
        suffixes = ["", ":done", ":progress", ":made"]
        keys = [self.key + suffix for suffix in suffixes]
        keys += [self._claim_key(index) for index in range(len(self.chunks))]
        self._redis.delete(*keys)


def _plan_key(namespace: str, dispatch_id: str) -> str:
    return f"{namespace}:chunks:{dispatch_id}"


@dataclass
class ChunkSharing:
    """What the Celery worker holding a clip's run gives it to share the clip's frames."""

    redis: Any
    namespace: str
    worker: str
    """This process's name in the worker registry ("host/pid")."""
    lease_s: float
    chunk_frames: int
    idle_workers: Callable[[], int]
    """How many other workers run nothing now."""
    invite: Callable[[WorkItem, int], None]
    """Send ``n`` invitations to help with ``item``'s chunks."""


class MaskMaker:
    """Makes (and checkpoints) the model masks of a range of a clip's frames."""

    def __init__(
        self,
        remover: Remover,
        source: Path,
        info: ClipInfo,
        name: str,
        masks: MaskCheckpoints,
        model: str | None,
    ) -> None:
        self._remover = remover
        self._source = source
        self._info = info
        self._name = name
        self._masks = masks
        self._options = RemoveOptions(format=OutputFormat.MASK, model=model)

    def __call__(self, start: int, end: int, cancel: CancelToken, after: AfterFrame) -> None:
        """Decode up to ``end``, and put each frame from ``start`` through the model
        unless its mask is kept already."""
        from ..engine.video.frames import frames  # PyAV: a clip's run alone needs it

        # The decoder is closed when the generator goes (CPython: as the loop ends).
        for frame in frames(self._source, self._info, name=self._name):
            if frame.index < start:
                continue
            if frame.index >= end:
                break
            cancel.raise_if_cancelled()
            made = False
            if self._masks.get(frame.index) is None:
                removal = self._remover.process(
                    frame.image, self._options, encode_result=False, cancel=cancel
                )
                if removal.model_mask is not None:
                    self._masks.put(frame.index, removal.model_mask)
                    made = True
            after(frame.index, made)


def run_chunks(
    plan: ChunkPlan,
    worker: str,
    lease_s: float,
    make: MaskMaker,
    cancel: CancelToken,
    *,
    keep_going: Callable[[], bool] = lambda: True,
    after_frame: Callable[[], None] | None = None,
) -> int:
    """Claim and run chunks until none is left unclaimed (or ``keep_going`` says stop,
    asked between chunks); the chunks run. A chunk cut short by an error is released
    for another worker to claim at once."""
    ran = 0
    while keep_going():
        index = plan.claim(worker, lease_s)
        if index is None:
            return ran
        start, end = plan.chunks[index]
        log.info("chunk %d (frames %d to %d) started", index, start + 1, end)

        def after(frame: int, made: bool, index: int = index) -> None:
            plan.frame_done(index, frame, worker, made, lease_s)
            if after_frame is not None:
                after_frame()

        try:
            make(start, end, cancel, after)
        except BaseException:
            with contextlib.suppress(Exception):
                plan.release(index)
            raise
        plan.finish(index)
        ran += 1
    return ran


def share_masks(
    sharing: ChunkSharing,
    item: WorkItem,
    make: MaskMaker,
    count: int,
    cancel: CancelToken,
    report: Callable[[int], None],
) -> dict[str, int] | None:
    """As the clip's coordinator: plan its chunks, invite idle workers, run chunks with
    them, re-run any whose helper was lost, and return the masks each worker made; None
    when Redis failed (the encode pass then makes the missing masks itself). ``report``
    hears the frames with a mask, across the cluster, as they grow."""
    from redis.exceptions import RedisError

    size = chunk_size(count, sharing.chunk_frames)
    plan = ChunkPlan(sharing.redis, sharing.namespace, item.dispatch_id, count, size)
    highest = 0

    def tell() -> None:
        nonlocal highest
        done = plan.frames_done()
        if done > highest:
            highest = done
            report(done)

    try:
        plan.publish()
        helpers = min(sharing.idle_workers(), len(plan.chunks) - 1)
        if helpers > 0:
            sharing.invite(item, helpers)
        log.info(
            "clip of %d frames in %d chunks of %d; %d helpers invited",
            count, len(plan.chunks), plan.size, helpers,
        )  # fmt: skip
        while True:
            run_chunks(plan, sharing.worker, sharing.lease_s, make, cancel, after_frame=tell)
            if plan.all_done():
                break
            tell()  # the helpers' chunks, while they finish them
            cancel.wait(WAIT_S)
            cancel.raise_if_cancelled()
        made = plan.made()
        log.info("chunked clip: masks made by %s", json.dumps(made, sort_keys=True))
        return made
    except (RedisError, PlanGone) as exc:
        log.warning("Redis failed mid-clip (%s); making the remaining masks here", exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            plan.remove()


def help_with_chunks(
    plan: ChunkPlan,
    worker: str,
    lease_s: float,
    make: MaskMaker,
    cancel: CancelToken,
    stop: Callable[[], bool],
) -> int:
    """As a helper: run the plan's chunks until none is left, the plan is gone (the clip
    ended) or ``stop()`` says so (asked between chunks); the chunks run."""

    def keep_going() -> bool:
        return not cancel.cancelled and plan.exists() and not stop()

    try:
        return run_chunks(plan, worker, lease_s, make, cancel, keep_going=keep_going)
    except PlanGone:
        return 0
