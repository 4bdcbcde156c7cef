"""What a queue export weighs, so ``BGREMOVER_MAX_IMPORT_BYTES`` fits the largest legitimate
import, and what an import and an oversized body cost the server.

It starts a real ``python -m bgremover serve`` (fresh data dir, the tiny ISNet-shaped model
built with ``onnx``), runs real jobs on it (tiny PNGs under camera, phone and hand-typed file
names; PNG, WebP with a white background, and files that fail with an error message), and
exports the queue with ``GET /api/export``. From those real rows it builds an export of
``--jobs`` jobs (default 10,000: 20 jobs a batch, 10 batches a session, every row a copy of a
real one under a fresh id and a numbered name), prints its size and the size per job, then
imports it into a second fresh server under the default limits (it must be accepted) while
sampling the server's RSS. Then it sends that server a JSON body of ``--attack-mb`` (150)
to ``/api/presets`` and to ``/api/import`` and prints the answer and the RSS again: the
imported export is the baseline, the oversized bodies should cost nothing.

    .venv/bin/python bench/import_bench.py
    .venv/bin/python bench/import_bench.py --jobs 50000
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bgremover.config import Settings
from bgremover.jobs.states import TERMINAL
from common import MIB, UI_HEADER, ResourceSampler, Server, tiny_pngs
from report import note, row, section  # bench/ is on sys.path when run as a script
from tiny_model import build_tiny_model

NAMES = [
    "IMG_20260412_183245.jpg",
    "PXL_20260412_183245123.MP.jpg",
    "DSC04213.JPG",
    "Holiday in Lisbon – day 3, the tram (edited).png",
    "product shot 017 — white background, final v2.png",
]
BATCH_JOBS = 20
SESSION_BATCHES = 10


def run_real_jobs(server: Server) -> dict[str, Any]:
    """Three batches of real jobs to their end; the server's export of them."""
    pngs = tiny_pngs(3 * BATCH_JOBS, "real")
    forms = [{}, {"format": "webp", "background_color": "#ffffff"}, {"alpha_matting": "true"}]
    with httpx.Client(base_url=server.url, headers=UI_HEADER, timeout=120) as client:
        batch_ids = []
        for index, form in enumerate(forms):
            files = [
                ("files", (f"{NAMES[n % len(NAMES)]}", data))
                for n, (_, data) in enumerate(pngs[index::3])
            ]
            files.append(("files", ("scan 2026-04-12 (broken).png", b"\x89PNG\r\n\x1a\nnot")))
            created = client.post("/api/batches", data=form, files=files)
            created.raise_for_status()
            batch_ids.append(created.json()["batch"]["id"])
        for batch_id in batch_ids:
            while client.get(f"/api/batches/{batch_id}").json()["status"] not in TERMINAL:
                time.sleep(0.2)
        export = client.get("/api/export")
        export.raise_for_status()
        result: dict[str, Any] = export.json()
        return result


def grown(real: dict[str, Any], jobs: int) -> dict[str, Any]:
    """An export of ``jobs`` jobs made of copies of the real rows under fresh ids."""
    sessions, batches, rows = [], [], []
    for index in range(jobs):
        if index % (BATCH_JOBS * SESSION_BATCHES) == 0:
            session = dict(real["sessions"][0], id=uuid.uuid4().hex)
            session["name"] = f"{session['name']} #{len(sessions) + 1}"
            sessions.append(session)
        if index % BATCH_JOBS == 0:
            batch = dict(real["batches"][len(batches) % len(real["batches"])])
            batch.update(id=uuid.uuid4().hex, session_id=sessions[-1]["id"])
            batch["name"] = f"{batch['name']} #{len(batches) + 1}"
            batches.append(batch)
        job = dict(real["jobs"][index % len(real["jobs"])], id=uuid.uuid4().hex)
        job.update(batch_id=batches[-1]["id"], retried_from=None, queue_order=index)
        stem, dot, ext = job["file_name"].rpartition(".")
        job["file_name"] = f"{stem} {index:05d}{dot}{ext}"
        rows.append(job)
    return {**real, "sessions": sessions, "batches": batches, "jobs": rows}


def wire(state: dict[str, Any]) -> bytes:
    """As ``GET /api/export`` sends it (Starlette's JSONResponse)."""
    return json.dumps(state, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def send_declared(url: str, path: str, size: int) -> tuple[str, int]:
    """Declare a JSON body of ``size`` bytes, send 1 MiB of it, return the status line and
    how many bytes were sent before the server answered or closed."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-BGRemover-Request: 1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(head)
        piece = b" " * MIB
        try:
            while sent < size:
                sock.sendall(piece[: size - sent])
                sent += min(MIB, size - sent)
        except OSError:
            pass  # the server answered and closed: what was sent is what it could read
        answer = b""
        try:
            while b"\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
        except OSError:
            pass
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(no answer)", sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--attack-mb", type=int, default=150)
    args = parser.parse_args(argv)
    limit = Settings().max_import_bytes
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny.onnx")
        section("a real export")
        source = Server(root / "source", model)
        try:
            source.wait_ready(60)
            real = run_real_jobs(source)
        finally:
            source.stop()
        body = wire(real)
        statuses: dict[str, int] = {}
        for job in real["jobs"]:
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
        row("jobs (by status)", f"{len(real['jobs'])} {statuses}")
        row("export size", f"{len(body):,} bytes")

        section(f"an export of {args.jobs:,} jobs built from those rows")
        big = wire(grown(real, args.jobs))
        per_job = len(big) / args.jobs
        row("size", f"{len(big):,} bytes ({len(big) / 1e6:.1f} MB)")
        row("per job (batches and sessions included)", f"{per_job:.0f} bytes")
        row("jobs that fit BGREMOVER_MAX_IMPORT_BYTES", f"{limit / per_job:,.0f} ({limit:,} B)")

        section("importing it into a fresh server (default limits)")
        target = Server(root / "target", model)
        try:
            target.wait_ready(60)
            with ResourceSampler(target) as rss:
                idle, _ = rss.sample()
                started = time.perf_counter()
                answer = httpx.post(
                    f"{target.url}/api/import", content=big, timeout=600,
                    headers={**UI_HEADER, "Content-Type": "application/json"},
                )  # fmt: skip
                took = time.perf_counter() - started
            row("answer", f"{answer.status_code} {answer.text[:120]}")
            row("took", f"{took:.1f} s")
            row("server RSS idle → peak", f"{idle / MIB:.0f} → {rss.peak_main / MIB:.0f} MiB")
            baseline = rss.peak_main - idle

            section(f"a declared {args.attack_mb} MB JSON body (the attack)")
            for path in ("/api/presets", "/api/import"):
                with ResourceSampler(target) as rss:
                    before, _ = rss.sample()
                    status, sent = send_declared(target.url, path, args.attack_mb * 1_000_000)
                row(f"{path}: answer", status)
                row(f"{path}: bytes sent before it", f"{sent:,}")
                growth = rss.peak_main - before
                row(f"{path}: RSS growth", f"{growth / MIB:.0f} MiB")
                if baseline > 0:
                    row(f"{path}: growth / the import's", f"{growth / baseline:.2f}×")
        finally:
            target.stop()
        note("RSS is the serve process alone (its workers hold the model, not the bodies)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
