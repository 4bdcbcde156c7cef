"""Device benchmark: a GPU (or other accelerator) against the CPU, in the same run.

For each photo size (12 MP and 1 MP by default: a real photo upscaled with LANCZOS, written
as a JPEG) and each number of jobs queued at once (1, 4 and 16), it times
``Remover.process_many`` over that many files, file in, file out, as ``bgremover remove``
runs them: on the CPU one image per lane (``plan_batch``), on an accelerator
``batch_size`` images per model run as one tensor (``Remover.process_batch``). Each device's
model is loaded and warmed up (two untimed runs) before its timings. It prints seconds per
image and images/s per device, the accelerator's speed-up over the CPU, and how far the
accelerator's mask (fp16 weights) is from the CPU's (fp32 copy) on the 1 MP photo.

Run it by hand from the repository root (it is not a test); the model must be cached
(``bgremover models pull``) unless ``--tiny``:

    .venv/bin/python bench/device_bench.py --device cuda            # GPU against the CPU
    .venv/bin/python bench/device_bench.py --device cuda --batch-size 8
    .venv/bin/python bench/device_bench.py --device cpu --counts 1,2 --sizes 1   # a quick check
    .venv/bin/python bench/device_bench.py --tiny --device cpu      # the script itself, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from bench.tiny_model import build_tiny_model  # noqa: E402

from bgremover.config import Settings  # noqa: E402
from bgremover.engine import BatchItem, Remover, plan_batch  # noqa: E402
from bgremover.engine.models import ModelStore, ResolvedModel  # noqa: E402

SIZES = {12: (4000, 3000), 3: (2000, 1500), 1: (1155, 866)}
"""Megapixels → the photo's width and height (4:3, as a phone takes them)."""


@dataclass(frozen=True)
class Timing:
    device: str
    megapixels: int
    queued: int
    seconds: float

    @property
    def per_image(self) -> float:
        return self.seconds / self.queued

    @property
    def images_per_second(self) -> float:
        return self.queued / self.seconds


def write_photos(directory: Path, megapixels: list[int]) -> dict[int, Path]:
    source = Image.open(REPO / "samples" / "astronaut.jpg").convert("RGB")
    photos = {}
    for mp in megapixels:
        path = directory / f"photo-{mp}mp.jpg"
        source.resize(SIZES[mp], Image.Resampling.LANCZOS).save(path, quality=92)
        photos[mp] = path
    return photos


def load(resolved: ResolvedModel, device: str, queued: int, batch_size: int | None) -> Remover:
    """A remover as ``bgremover remove`` loads one for ``queued`` images on ``device``."""
    threads = plan_batch(queued).threads if device == "cpu" and not batch_size else 0
    return Remover(resolved, device=device, intra_op_threads=threads, batch_size=batch_size)


def time_queue(remover: Remover, photo: Path, queued: int, out: Path) -> float:
    """Seconds for ``queued`` copies of ``photo`` through ``process_many``, warmed up."""
    lanes = plan_batch(queued).lanes if remover.batch_size == 1 else 1
    for index in range(2):  # onnxruntime's first runs are slow (allocations, kernel choice)
        remover.process(photo, destination=out / f"warm-up-{index}.png")
    items = [BatchItem(photo, out / f"result-{i}.png") for i in range(queued)]
    started = time.perf_counter()
    for item, result in remover.process_many(items, lanes=lanes):
        if isinstance(result, Exception):
            raise SystemExit(f"{item.source}: {result}")
    return time.perf_counter() - started


def mask_agreement(cpu: Remover, other: Remover, photo: Path) -> tuple[float, int]:
    """IoU at 128 and the largest |Δ alpha| of the two devices' masks."""
    a = np.asarray(cpu.process(photo, encode_result=False).mask, dtype=np.int16)
    b = np.asarray(other.process(photo, encode_result=False).mask, dtype=np.int16)
    union = np.logical_or(a >= 128, b >= 128).sum()
    iou = float(np.logical_and(a >= 128, b >= 128).sum() / union) if union else 1.0
    return iou, int(np.abs(a - b).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device to measure (default cuda)")
    parser.add_argument("--counts", default="1,4,16", help="jobs queued at once (1,4,16)")
    parser.add_argument("--sizes", default="12,1", help="megapixels: 12, 3 and/or 1 (12,1)")
    parser.add_argument("--batch-size", type=int, help="images per model run on the device")
    parser.add_argument("--tiny", action="store_true", help="the tiny model: checks the script")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    # ``auto`` is measured against the CPU too (on a machine without an accelerator, with
    # ``--batch-size``, that times the batch path on the CPU).
    devices = ["cpu"] if args.device == "cpu" else ["cpu", args.device]

    with tempfile.TemporaryDirectory(prefix="bgremover-device-bench-") as folder:
        work = Path(folder)
        settings = Settings(cache_dir=work / "cache") if args.tiny else Settings()
        model_path = build_tiny_model(work / "tiny.onnx", matmuls=1) if args.tiny else None
        resolved = ModelStore(settings.models_dir).resolve(settings.model, model_path)
        photos = write_photos(work, sizes)
        print(f"model: {resolved.path.name}; cores: {len(os.sched_getaffinity(0))}")
        timings: list[Timing] = []
        removers: dict[str, Remover] = {}
        for index, device in enumerate(devices):
            for queued in counts:
                # The baseline runs as the CPU does by default; the device as asked.
                remover = load(resolved, device, queued, args.batch_size if index else None)
                removers[device] = remover
                runs_on = f"{remover.device.device} ({remover.device.provider})"
                print(f"{device}: {queued} queued runs on {runs_on}, batch {remover.batch_size}")
                for mp in sizes:
                    seconds = time_queue(remover, photos[mp], queued, work)
                    timings.append(Timing(device, mp, queued, seconds))

        print()
        head = f"{'photo':>6} {'queued':>6}"
        for device in devices:
            head += f" {device + ' s/img':>12} {device + ' img/s':>12}"
        print(head + ("" if len(devices) == 1 else f" {'speed-up':>9}"))
        for mp in sizes:
            for queued in counts:
                row = f"{mp:>4}MP {queued:>6}"
                found = {t.device: t for t in timings if (t.megapixels, t.queued) == (mp, queued)}
                for device in devices:
                    timing = found[device]
                    row += f" {timing.per_image:>12.3f} {timing.images_per_second:>12.2f}"
                if len(devices) > 1:
                    row += f" {found['cpu'].per_image / found[devices[1]].per_image:>8.2f}×"
                print(row)
        if len(devices) > 1:
            iou, delta = mask_agreement(removers["cpu"], removers[devices[1]], photos[min(sizes)])
            print(f"\nmask {devices[1]} against cpu, {min(sizes)} MP: IoU {iou:.4f}, max Δ {delta}")


if __name__ == "__main__":
    main()
