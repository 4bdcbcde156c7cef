"""Clips: what a frame costs against a still photo of its size, how soon a clip job shows
progress, and how much a kill -9 mid-clip throws away.

    PYTHONPATH=src .venv/bin/python bench/video_bench.py [--model-path M.onnx] [--frames 20]

Without ``--model-path`` the tiny ISNet-shaped model (bench/tiny_model.py, one 1024×1024
MatMul) runs, so the numbers are the clip machinery's (decode, checkpoints, encode) against
the photo pipeline's, not the network's; with the real model the network dominates both.

1. per-frame time: ``process_clip`` (WebM VP9 with alpha, checkpoints in a local store) over
   the clip's frame count, against ``Remover.process`` of the same frames as stills (PNG
   encoded), best of ``--repeat``; goal ≤ 1.1×.
2. time to first progress: a real worker process (``LocalProcessExecutor``, model loaded)
   from ``submit`` to the run's first "frame n of N" report and to its first finished frame.
3. resume after kill -9: the worker is killed once a quarter of the frames are done, the run
   submitted again; frames the model ran on twice (goal ≤ 1).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.tiny_model import build_tiny_model
from tests.video_support import moving_frames, write_mp4

from bgremover import RemoveOptions, Settings, load_remover
from bgremover.engine.video.clip import process_clip
from bgremover.engine.video.probe import ClipLimits, open_clip
from bgremover.workers import Finished, Freed, Lost, Report, StageProgress
from bgremover.workers.base import WorkItem
from bgremover.workers.local import LocalProcessExecutor

LIMITS = ClipLimits(seconds=3600, frames=100_000, pixels=100_000_000)


def per_frame(settings: Settings, clip: Path, frames: int, repeat: int, folder: Path) -> None:
    remover = load_remover(settings)
    stills = moving_frames(frames)
    remover.process(stills[0])  # onnxruntime's first run is slow anyway
    info = open_clip(clip, LIMITS, name=clip.name)
    still_times, clip_times = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        for image in stills:
            remover.process(image, RemoveOptions())
        still_times.append((time.perf_counter() - started) / frames)
        started = time.perf_counter()
        process_clip(remover, clip, folder / "out.webm", RemoveOptions(), info, name=clip.name)
        clip_times.append((time.perf_counter() - started) / frames)
    still, cut = min(still_times), min(clip_times)
    print(f"per frame: clip {cut * 1000:.1f} ms, still {still * 1000:.1f} ms, "
          f"ratio {cut / still:.2f}× (goal ≤ 1.1×; best of {repeat}, {frames} frames "
          f"{info.width}×{info.height})")  # fmt: skip


class _Sink:
    def __init__(self) -> None:
        self.reports: list[tuple[float, Report]] = []
        self._changed = threading.Condition()

    def __call__(self, report: Report) -> None:
        with self._changed:
            self.reports.append((time.monotonic(), report))
            self._changed.notify_all()

    def wait(
        self, match: Callable[[Report], bool], *, after: float = 0.0, timeout: float = 600
    ) -> tuple[float, Report]:
        """The first report since ``after`` (monotonic) that matches, and when it came."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: next(((t, r) for t, r in self.reports if t >= after and match(r)), None),
                timeout,
            )
        if found is None:
            raise SystemExit("no matching report: the worker is stuck")
        return found


def _item(clip: Path, data_dir: Path) -> WorkItem:
    digest = hashlib.sha256(clip.read_bytes()).hexdigest()
    key = f"originals/{digest[:2]}/{digest}"
    (data_dir / key).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, data_dir / key)
    job = uuid.uuid4().hex
    return WorkItem(job, uuid.uuid4().hex, key, f"results/{job[:2]}/{job}.webm")


def in_worker(settings: Settings, clip: Path, frames: int, data_dir: Path) -> None:
    executor = LocalProcessExecutor(settings.model_copy(update={"data_dir": data_dir}), workers=1)
    sink = _Sink()
    executor.start(sink)
    try:
        if not executor.wait_ready(600):
            raise SystemExit("the worker never loaded its model")
        item = _item(clip, data_dir)
        submitted = time.monotonic()
        executor.submit(item)
        first, _ = sink.wait(lambda r: isinstance(r, StageProgress) and r.frames is not None)
        framed, _ = sink.wait(lambda r: isinstance(r, StageProgress) and r.fraction > 0)
        print(f"first progress: {(first - submitted) * 1000:.0f} ms after submit "
              f"(first finished frame: {(framed - submitted) * 1000:.0f} ms)")  # fmt: skip
        _, reached = sink.wait(
            lambda r: isinstance(r, StageProgress) and r.fraction >= 0.25 and r.frames is not None
        )
        done = round(reached.fraction * frames)  # type: ignore[union-attr]
        os.kill(next(iter(executor.worker_pids().values())), signal.SIGKILL)
        lost_at, _ = sink.wait(lambda r: isinstance(r, Lost) and r.dispatch_id == item.dispatch_id)
        sink.wait(lambda r: isinstance(r, Freed), after=lost_at)  # the replacement is ready
        again = replace(item, dispatch_id=uuid.uuid4().hex)
        executor.submit(again)
        _, final = sink.wait(
            lambda r: isinstance(r, Finished) and r.dispatch_id == again.dispatch_id
        )
        assert isinstance(final, Finished) and final.frames_run is not None
        redone = final.frames_run - (frames - done)
        print(f"resume after kill -9 at frame {done} of {frames}: the model ran on "
              f"{final.frames_run} frames, {redone} redone (goal ≤ 1)")  # fmt: skip
    finally:
        executor.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, help="an ISNet-compatible .onnx (default: tiny)")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="video-bench-") as scratch:
        folder = Path(scratch)
        model = args.model_path or build_tiny_model(folder / "tiny.onnx", matmuls=1)
        settings = Settings(model_path=model, device="cpu")
        clip = write_mp4(folder / "clip.mp4", moving_frames(args.frames))
        print(f"model {model.name}, {os.cpu_count()} cores")
        per_frame(settings, clip, args.frames, args.repeat, folder)
        in_worker(settings, clip, args.frames, folder / "data")


if __name__ == "__main__":
    main()
