"""ETA benchmark: how right the progress and ETAs a user sees are, on a fresh server.

Reproduces the table of the "progress truth" issue. A fresh ``bgremover serve`` (new data dir,
as every new user has) gets one batch of 10 photos in shuffled order (5 small: the sample
photos; 3 of 3 MP and 2 of 12 MP, upscaled from them with LANCZOS), the SSE stream read from
before the upload. Sampled every 0.25 s against what really happened (each job's and the
batch's end as the client received it):

- job ETA median relative error before the first job completes, and after;
- batch ETA median relative error after the first completion, and at 75 % of the wall time;
- the worst gap between the batch's percent and the share of the wall time elapsed, twice:
  as the stream delivers it (the last ``batch.updated`` percent held until the next: what
  scripts, ``watch --server`` and every other client get; the goal is for this one), and as
  the UI shows it (store.js: an ETA counts down from when it arrived; a running item's
  percent goes on from what was shown toward 100 % at the pace its ETA implies, never past
  99 % and never backwards);
- whether the stream's batch percent ever went back.

Each measure is printed with its goal. The 100-client SSE latency is ``bench/sse_bench.py``'s.
Run it by hand from the repository root (about 2–4 min on 2 cores):

    .venv/bin/python bench/eta_bench.py [--workers 2] [--timeline]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from common import SAMPLES, UI_HEADER, Server  # bench/ is on sys.path when run as a script
from report import note, row, section

SAMPLE_EVERY_S = 0.25
MIN_LEFT_S = 0.5
"""Samples with less than this left are skipped: a relative error there says nothing."""


def make_photos(folder: Path) -> list[Path]:
    """5 small, 3 of 3 MP, 2 of 12 MP, shuffled with a fixed seed."""
    samples = sorted(SAMPLES.glob("*.jpg"))
    photos = [samples[i % len(samples)] for i in range(5)]
    for index, (megapixels, count) in enumerate(((3, 3), (12, 2))):
        for n in range(count):
            source = samples[(index + n) % len(samples)]
            with Image.open(source) as image:
                scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
                size = (round(image.width * scale), round(image.height * scale))
                path = folder / f"{source.stem}-{megapixels}mp-{n}.jpg"
                image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(path, quality=92)
                photos.append(path)
    random.Random(7).shuffle(photos)
    return photos


@dataclass
class Recording:
    events: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def listen(url: str, recording: Recording, ready: threading.Event) -> None:
    """Read the SSE stream until the batch has finished, recording arrival times."""
    kind, data = "", ""
    with httpx.stream("GET", f"{url}/api/events", timeout=None) as response:
        ready.set()
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
            elif not line and data:
                payload = json.loads(data)
                recording.events.append((time.monotonic(), kind, payload))
                if kind == "notification" and payload["title"].startswith("Batch finished"):
                    recording.done.set()
                    return
                kind, data = "", ""


@dataclass
class Shown:
    """What the UI shows of one job or batch: its last report and when it arrived."""

    progress: float = 0.0
    eta: float | None = None
    since: float = 0.0
    floor: float = 0.0
    running: bool = False

    def update(self, at: float, progress: float, eta: float | None, running: bool) -> None:
        if self.running and running:
            self.floor = self.percent(at)
        self.progress, self.eta, self.since, self.running = progress, eta, at, running

    def eta_at(self, t: float) -> float | None:
        return None if self.eta is None else max(0.0, self.eta - (t - self.since))

    def percent(self, t: float) -> float:
        if not self.running or not self.eta:
            return self.progress
        start = max(self.floor, self.progress)
        return max(start, min(99.0, start + (100 - start) * min((t - self.since) / self.eta, 1)))


def analyse(
    recording: Recording, uploaded_at: float, batch_id: str, timeline: bool = False
) -> None:
    events = recording.events
    job_end: dict[str, float] = {}
    for at, kind, data in events:
        if kind == "job.updated" and data["job"]["status"] in ("completed", "failed"):
            job_end.setdefault(data["job"]["id"], at)
    batch_end = max(job_end.values())
    first_end = min(job_end.values())
    wall = batch_end - uploaded_at
    jobs: dict[str, Shown] = {}
    batch = Shown()
    job_before, job_after, batch_after, gaps, stream_gaps = [], [], [], [], []
    backwards = 0
    at_75: float | None = None
    index = 0
    t = uploaded_at
    while t < batch_end:
        while index < len(events) and events[index][0] <= t:
            at, kind, data = events[index]
            index += 1
            if kind == "job.progress":
                shown = jobs.setdefault(data["id"], Shown())
                shown.update(at, data["progress"], data["eta"], True)
            elif kind == "job.updated":
                job = data["job"]
                shown = jobs.setdefault(job["id"], Shown())
                shown.update(
                    at, job["progress"], job["estimated_time_remaining"],
                    job["status"] == "processing",
                )  # fmt: skip
            elif kind == "batch.updated" and data["batch"]["id"] == batch_id:
                b = data["batch"]
                backwards += b["progress"] < batch.progress
                batch.update(
                    at, b["progress"], b["estimated_time_remaining"],
                    b["status"] in ("pending", "processing"),
                )  # fmt: skip
        for job_id, shown in jobs.items():
            left = job_end.get(job_id, batch_end) - t
            eta = shown.eta_at(t)
            if shown.running and eta is not None and left > MIN_LEFT_S:
                (job_before if t < first_end else job_after).append(abs(eta - left) / left)
        left = batch_end - t
        eta = batch.eta_at(t)
        if eta is not None and left > MIN_LEFT_S:
            error = abs(eta - left) / left
            if t >= first_end:
                batch_after.append(error)
            if at_75 is None and t - uploaded_at >= 0.75 * wall:
                at_75 = error
        elapsed = 100 * (t - uploaded_at) / wall
        gaps.append((abs(batch.percent(t) - elapsed), t - uploaded_at, batch.percent(t), elapsed))
        received = batch.progress
        stream_gaps.append((abs(received - elapsed), t - uploaded_at, received, elapsed))
        t += SAMPLE_EVERY_S

    section("what the UI showed, sampled every 0.25 s, against what happened")
    row("batch wall time (upload to last job's end)", f"{wall:.1f} s")
    report("job ETA median error before the first completion", job_before, 0.25)
    report("job ETA median error after the first completion", job_after, 0.10)
    report("batch ETA median error after the first completion", batch_after, 0.08)
    row(
        "batch ETA error at 75 % of the wall time",
        f"{100 * at_75:.0f} % (goal ≤ 15 %)" if at_75 is not None else "no sample",
    )
    for label, samples, how in (
        ("worst |batch % − elapsed %| as the stream sends it", stream_gaps, "sent"),
        ("worst |batch % − elapsed %| as the UI shows it", gaps, "shown"),
    ):
        gap, when, shown, elapsed = max(samples)
        goal = " (goal ≤ 10)" if samples is stream_gaps else ""
        row(
            label,
            f"{gap:.1f} points{goal}, at {when:.1f} s: {shown:.0f} % {how}, "
            f"{elapsed:.0f} % elapsed",
        )
    row("times the stream's batch percent went back", str(backwards))
    if timeline:
        section("batch.updated as received: seconds since the upload, percent sent, % elapsed")
        for at, kind, data in events:
            if kind == "batch.updated" and data["batch"]["id"] == batch_id:
                since, percent = at - uploaded_at, data["batch"]["progress"]
                note(f"{since:6.2f} s {percent:6.1f} % {100 * since / wall:5.1f} %")


def report(label: str, errors: list[float], goal: float) -> None:
    if not errors:
        row(label, "no samples")
        return
    value = statistics.median(errors)
    row(label, f"{100 * value:.0f} % over {len(errors)} samples (goal ≤ {100 * goal:.0f} %)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeline", action="store_true", help="print every batch event")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bgremover-eta-bench-") as tmp:
        root = Path(tmp)
        (root / "photos").mkdir()
        photos = make_photos(root / "photos")
        server = Server(root / "data", None, slots=args.workers)
        url = server.url
        try:
            server.wait_ready(120)
            recording, ready = Recording(), threading.Event()
            listener = threading.Thread(target=listen, args=(url, recording, ready), daemon=True)
            listener.start()
            ready.wait(30)
            files = [("files", (p.name, p.read_bytes())) for p in photos]
            uploaded_at = time.monotonic()
            created = httpx.post(
                f"{url}/api/batches", files=files, headers=UI_HEADER, timeout=120
            ).json()
            if not recording.done.wait(1800):
                note("the batch did not finish within 30 min")
                return 1
        finally:
            server.stop()
        sizes = ", ".join(f"{p.name}" for p in photos)
        print(f"bgremover ETA benchmark: 10 photos on a fresh server, {args.workers} workers")
        note(f"order: {sizes}")
        analyse(recording, uploaded_at, created["batch"]["id"], args.timeline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
