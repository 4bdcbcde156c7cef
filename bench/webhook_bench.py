"""Webhook delivery latency: from a job's completion in the database to the receiver.

It starts a real ``python -m bgremover serve`` process (fresh temporary data dir, SQLite by
default or ``--database-url``, the tiny ISNet-shaped model built here, and
``BGREMOVER_WEBHOOK_ALLOW_PRIVATE=1`` so it may send to loopback), a receiver (a threaded
HTTP server on a loopback port, answering 200 at once), registers a webhook for
``job.completed``, uploads ``--jobs`` small PNGs as one batch and waits for every delivery.

Latency per delivery: the payload's ``timestamp`` (the job's ``end_time``, taken in the
transaction that completed it and wrote the delivery) → the receiver read the request
(``time.time()``; one machine, one clock). It covers the commit, the event that wakes the
dispatcher, the claim, signing, connecting and sending. Every signature is verified.

    .venv/bin/python bench/webhook_bench.py                    # 200 jobs, SQLite
    .venv/bin/python bench/webhook_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1/db
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from standardwebhooks import Webhook

from common import UI_HEADER, Server, percentile  # bench/ is on sys.path when run as a script
from report import note, row, section
from tiny_model import build_tiny_model


class Receiver:
    """Keeps (arrival time, headers, body) of every request; answers 200 at once."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, str], bytes]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                at = time.time()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver.changed:
                    receiver.got.append((at, dict(self.headers.items()), body))
                    receiver.changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def pngs(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    rng = np.random.default_rng(7)
    files = []
    for index in range(count):
        buffer = BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
        files.append(("files", (f"photo-{index:03}.png", buffer.getvalue(), "image/png")))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--budget", type=float, default=280, help="seconds before giving up")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny.onnx", matmuls=1)
        settings = {"BGREMOVER_WEBHOOK_ALLOW_PRIVATE": "1"}
        if args.database_url:
            settings["BGREMOVER_DATABASE_URL"] = args.database_url
        server = Server(root / "data", model, settings=settings, slots=None)
        url = server.url
        try:
            deadline = time.monotonic() + args.budget
            server.wait_ready(args.budget)
            receiver = Receiver()
            hook = httpx.post(
                f"{url}/api/webhooks",
                json={"url": receiver.url, "events": ["job.completed"]},
                headers=UI_HEADER,
            ).json()
            started = time.monotonic()
            created = httpx.post(
                f"{url}/api/batches", files=pngs(args.jobs), headers=UI_HEADER, timeout=120
            )
            created.raise_for_status()
            with receiver.changed:
                left = deadline - time.monotonic()
                if not receiver.changed.wait_for(lambda: len(receiver.got) >= args.jobs, left):
                    sys.exit(f"only {len(receiver.got)} of {args.jobs} deliveries arrived")
            elapsed = time.monotonic() - started
        finally:
            server.stop()

    verifier = Webhook(hook["secret"])
    latencies = []
    for at, headers, body in receiver.got:
        verifier.verify(body, headers)
        completed = datetime.fromisoformat(json.loads(body)["timestamp"]).timestamp()
        latencies.append((at - completed) * 1000)
    ids = {headers["webhook-id"] for _, headers, _ in receiver.got}

    section(f"webhook delivery: {args.jobs} jobs, {args.database_url or 'SQLite'}")
    row("deliveries received (distinct webhook-ids)", f"{len(receiver.got)} ({len(ids)})")
    row("upload → last delivery", f"{elapsed:.1f} s")
    for label, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        row(
            f"latency {label}: job completed in the database → receiver",
            f"{percentile(latencies, q):.1f} ms",
        )
    note("every signature verified with standardwebhooks' Webhook.verify")


if __name__ == "__main__":
    main()
