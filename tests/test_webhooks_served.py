"""Webhooks across a restart, with real `bgremover serve` processes: deliveries written while
no process sends them (the server is then killed) are sent by the next server on the same
database, each once, signed."""

from __future__ import annotations

from pathlib import Path

import httpx
from standardwebhooks import Webhook

from .serving import UI, served
from .waiting import until
from .webhook_support import receiving


def test_deliveries_written_before_a_server_died_are_sent_by_the_next_one(
    tmp_path: Path, tiny_model: Path, photos: dict[str, Path]
) -> None:
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_WEBHOOK_ALLOW_PRIVATE": "1"}
    root = tmp_path / "data"
    with receiving() as receiver:
        # The first server sends nothing (another process of the deployment would).
        with served(root, env={**env, "BGREMOVER_WEBHOOK_SENDERS": "0"}) as (url, _):
            hook = httpx.post(
                f"{url}/api/webhooks",
                json={"url": receiver.url, "events": ["job.completed", "batch.completed"]},
                headers=UI,
            ).json()
            photo = photos["coffee.jpg"]
            files = [("files", (photo.name, photo.read_bytes(), "image/jpeg"))] * 3
            created = httpx.post(f"{url}/api/batches", files=files, headers=UI, timeout=60)
            batch_id = created.json()["batch"]["id"]
            until(
                lambda: httpx.get(f"{url}/api/batches/{batch_id}").json()["status"] == "completed",
                what="the batch completed",
            )
            assert httpx.get(f"{url}/api/webhooks/{hook['id']}/deliveries").json() == []
        # Killed (served() kills it); the deliveries wait in the database.
        assert receiver.received == []
        with served(root, env=env):
            requests = receiver.wait_for("four deliveries", lambda seen: len(seen) >= 4)
        payloads = [Webhook(hook["secret"]).verify(r.body, r.headers) for r in requests]
        assert sorted(p["type"] for p in payloads) == ["batch.completed"] + ["job.completed"] * 3
        assert len({r.id for r in requests}) == 4 == len(receiver.received)
