"""Webhooks as a receiver meets them: a real HTTP server on a loopback port (allowed by
``webhook_allow_private``) gets signed deliveries that ``standardwebhooks`` verifies, again
after 500s and dropped connections, once per delivery with two dispatchers on one
PostgreSQL database, again after a sender died holding them; targets a request must not
reach are refused at creation and at send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from bgremover import Settings
from bgremover.jobs.bus.memory import InMemoryEventBus
from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.outbox import add_endpoint, record
from bgremover.jobs.times import utcnow
from bgremover.web import create_app
from bgremover.webhooks.dispatcher import Dispatcher
from bgremover.webhooks.sender import Sender
from bgremover.webhooks.store import WebhookStore

from .jobs_support import postgres_database, wait_for_job
from .serving import UI
from .waiting import until
from .webhook_support import DROP, Received, Receiver, receiving

FAST: dict[str, Any] = {
    "webhook_allow_private": True,
    "webhook_retry_base": timedelta(milliseconds=50),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("webhooks")
    settings = Settings(data_dir=root, model_path=tiny_model, **FAST)
    with TestClient(create_app(settings), base_url="http://localhost", headers=UI) as test_client:
        yield test_client


def upload(client: TestClient, photo: Path, count: int = 1, **form: Any) -> dict[str, Any]:
    files = [("files", (photo.name, photo.read_bytes(), "image/jpeg"))] * count
    response = client.post("/api/batches", files=files, data=form)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def verified(secret: str, request: Received) -> Any:
    """The payload, once its signature verified as a receiver checks it."""
    return Webhook(secret).verify(request.body, request.headers)


def test_a_webhook_gets_its_events_signed_and_its_attempts_are_listed(
    client: TestClient, photos: dict[str, Path]
) -> None:
    with receiving() as receiver:
        created = client.post(
            "/api/webhooks",
            json={"url": receiver.url, "events": ["job.completed", "batch.completed"],
                  "description": "shop"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")
        listed = client.get("/api/webhooks").json()
        assert [(h["id"], h["url"], h["description"]) for h in listed] == [
            (hook["id"], receiver.url, "shop")
        ]
        assert "secret" not in listed[0]

        body = upload(client, photos["coffee.jpg"], count=2)
        requests = receiver.wait_for("three deliveries", lambda seen: len(seen) >= 3)
        payloads = [verified(hook["secret"], r) for r in requests]
        assert sorted(p["type"] for p in payloads) == [
            "batch.completed", "job.completed", "job.completed"
        ]  # fmt: skip
        jobs = {p["data"]["id"]: p["data"] for p in payloads if p["type"] == "job.completed"}
        assert set(jobs) == {job["id"] for job in body["jobs"]}
        assert all(job["status"] == "completed" and job["result"] for job in jobs.values())
        assert all(r.headers["webhook-id"].startswith("msg_") for r in requests)
        assert len({r.id for r in requests}) == 3

        attempts = until(
            lambda: (
                len(a := client.get(f"/api/webhooks/{hook['id']}/deliveries").json()) == 3 and a
            ),
            what="three attempts recorded",
        )
        assert {a["delivery_id"] for a in attempts} == {r.id for r in requests}
        assert all(a["status_code"] == 200 and a["error"] is None for a in attempts)
        assert all(a["delivery_status"] == "delivered" for a in attempts)
        assert all(a["latency_ms"] > 0 and a["response_excerpt"] == "ok" for a in attempts)

        assert client.delete(f"/api/webhooks/{hook['id']}").status_code == 204
        assert client.get("/api/webhooks").json() == []
        assert client.get(f"/api/webhooks/{hook['id']}/deliveries").status_code == 404
        assert client.delete(f"/api/webhooks/{hook['id']}").status_code == 404


def test_an_uploads_callback_url_gets_that_batchs_events_only(
    client: TestClient, photos: dict[str, Path]
) -> None:
    with receiving() as receiver:
        mine = upload(client, photos["coffee.jpg"], callback_url=receiver.url)
        callback = mine["callback"]
        assert callback["url"] == receiver.url and callback["secret"].startswith("whsec_")
        other = upload(client, photos["coffee.jpg"])
        wait_for_job(client, other["jobs"][0]["id"], lambda job: job["status"] == "completed")
        requests = receiver.wait_for("the job's and the batch's end", lambda seen: len(seen) >= 2)
        payloads = [verified(callback["secret"], r) for r in requests]
        assert sorted(p["type"] for p in payloads) == ["batch.completed", "job.completed"]
        assert {p["data"].get("batch_id", p["data"]["id"]) for p in payloads} == {
            mine["batch"]["id"]
        }
        listed = {h["id"]: h for h in client.get("/api/webhooks").json()}
        assert listed[callback["id"]]["batch_id"] == mine["batch"]["id"]
        client.delete(f"/api/webhooks/{callback['id']}")


def test_deliveries_are_retried_after_a_dropped_connection_and_500s(
    client: TestClient, photos: dict[str, Path]
) -> None:
    answers = [DROP, 500, 503, 200]
    with receiving(lambda request, seen: answers[seen]) as receiver:
        hook = client.post(
            "/api/webhooks", json={"url": receiver.url, "events": ["job.completed"]}
        ).json()
        before = attempt_counts(client)
        upload(client, photos["coffee.jpg"])
        requests = receiver.wait_for("four attempts", lambda seen: len(seen) >= 4)
        assert len({r.id for r in requests}) == 1, "every attempt carries the same webhook-id"
        payloads = [verified(hook["secret"], r) for r in requests]
        assert all(p == payloads[0] for p in payloads)
        attempts = until(
            lambda: (
                (a := client.get(f"/api/webhooks/{hook['id']}/deliveries").json())
                and len(a) == 4
                and a
            ),
            what="the fourth attempt recorded",
        )
        codes = [a["status_code"] for a in reversed(attempts)]
        assert codes == [None, 500, 503, 200]
        assert "RemoteProtocolError" in attempts[-1]["error"]
        assert attempts[0]["delivery_status"] == "delivered"
        after = attempt_counts(client)
        assert {k: after[k] - before[k] for k in after} == {
            "delivered": 1, "retrying": 3, "given_up": 0,
        }  # fmt: skip
        client.delete(f"/api/webhooks/{hook['id']}")


def attempt_counts(client: TestClient) -> dict[str, float]:
    """``bgremover_webhook_attempts_total`` by outcome, as Prometheus reads it."""
    families = text_string_to_metric_families(client.get("/metrics").text)
    found = next(f for f in families if f.name == "bgremover_webhook_attempts")
    return {s.labels["outcome"]: s.value for s in found.samples if s.name.endswith("_total")}


def test_targets_a_request_must_not_reach_are_refused_at_creation(
    client: TestClient, photos: dict[str, Path]
) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    settings = state.settings.model_copy(update={"webhook_allow_private": False})
    strict_app = create_app(settings, system=state.system)
    strict = TestClient(strict_app, base_url="http://localhost", headers=UI)
    with receiving() as receiver:
        for url, reason in [
            (receiver.url, "127.0.0.1 is a loopback address"),
            (f"http://localhost:{receiver.port}/", "is a loopback address"),
            (f"http://[::1]:{receiver.port}/", "::1 is a loopback address"),
            (f"http://[::ffff:127.0.0.1]:{receiver.port}/", "is a loopback address"),
            (f"http://2130706433:{receiver.port}/", "(127.0.0.1) is a loopback address"),
            (f"http://0.0.0.0:{receiver.port}/", "is an unspecified address"),
            ("ftp://example.com/hook", "must start with https:// or http://"),
            ("https://user:pw@example.com/hook", "user name or password"),
        ]:
            refused = strict.post("/api/webhooks", json={"url": url, "events": ["job.failed"]})
            assert refused.status_code == 422, url
            error = refused.json()["error"]
            assert error["code"] == "webhook_url_refused" and reason in error["message"], error
            if "loopback" in reason:  # and the message says how to allow it
                assert "BGREMOVER_WEBHOOK_ALLOW_PRIVATE=1" in error["message"]
        before = strict.get("/api/batches").json()["total"]
        files = [("files", ("coffee.jpg", photos["coffee.jpg"].read_bytes(), "image/jpeg"))]
        refused = strict.post("/api/batches", files=files, data={"callback_url": receiver.url})
        assert refused.status_code == 422
        assert "loopback" in refused.json()["error"]["message"]
        assert strict.get("/api/batches").json()["total"] == before, "no batch was queued"
        assert strict.get("/api/webhooks").json() == []
        assert receiver.received == []


def test_targets_are_checked_again_at_send_and_on_every_redirect() -> None:
    payload = json.dumps({"type": "job.completed", "timestamp": "now", "data": {}})
    secret = "whsec_" + "A" * 32
    with receiving() as final, receiving() as hops:
        # A loopback receiver that was allowed when it was created is not once it is not.
        strict = Sender(allow_private=False, connect_timeout=1, timeout=2)
        outcome = strict.send(final.url, "msg_1", payload, secret)
        assert outcome.status_code is None and not outcome.delivered
        assert outcome.error and "127.0.0.1 is a loopback address" in outcome.error

        sender = Sender(allow_private=True, connect_timeout=1, timeout=2)
        locations = {
            "/to-final": final.url,
            "/to-unspecified": f"http://0.0.0.0:{final.port}/hook",
            "/to-ftp": "ftp://127.0.0.1/hook",
            "/to-credentials": f"http://me:pw@127.0.0.1:{final.port}/hook",
            "/loop": "/loop",
        }
        hops.script = lambda request, seen: (307, {"location": locations[request.path]})
        base = f"http://127.0.0.1:{hops.port}"
        followed = sender.send(f"{base}/to-final", "msg_2", payload, secret)
        assert followed.delivered and followed.status_code == 200
        assert Webhook(secret).verify(final.received[-1].body, final.received[-1].headers)
        for path, reason in [
            ("/to-unspecified", "0.0.0.0 is an unspecified address"),
            ("/to-ftp", "must start with https:// or http://"),
            ("/to-credentials", "user name or password"),
            ("/loop", "more than 3 redirects"),
        ]:
            outcome = sender.send(f"{base}{path}", "msg_3", payload, secret)
            assert outcome.error and reason in outcome.error, (path, outcome)
        assert [r.id for r in final.received] == ["msg_2"], "only the allowed hop was reached"


def write_deliveries(url: str, receiver: Receiver, count: int) -> tuple[Any, str]:
    """A migrated database at ``url`` with one endpoint for ``receiver`` and ``count``
    deliveries owed to it; its session factory and the endpoint's secret."""
    engine = connect(url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions.begin() as db:
        endpoint = add_endpoint(db, url=receiver.url, events=["job.completed"], now=utcnow())
        secret = endpoint.secret
    for index in range(count):
        with sessions.begin() as db:
            record(db, "job.completed", "no-batch", lambda i=index: {"n": i}, utcnow())
    return sessions, secret


def dispatcher(sessions: Any, now: Any = utcnow, **settings: Any) -> Dispatcher:
    config = Settings(**{**FAST, **settings})
    return Dispatcher(config, sessions, InMemoryEventBus(), now=now)


def test_two_dispatchers_on_one_postgresql_database_send_each_delivery_once() -> None:
    with postgres_database() as url, receiving() as receiver:
        sessions, secret = write_deliveries(url, receiver, 200)
        senders = [dispatcher(session_factory(connect(url))) for _ in range(2)]
        for each in senders:
            each.start()
        try:
            requests = receiver.wait_for("200 deliveries", lambda seen: len(seen) >= 200)
            counts = until(
                lambda: (c := WebhookStore(sessions).delivery_counts())["delivered"] == 200 and c,
                what="every delivery recorded",
            )
        finally:
            for each in senders:
                each.stop()
        assert counts == {"pending": 0, "delivered": 200, "failed": 0}
        assert len(receiver.received) == 200 == len({r.id for r in receiver.received})
        assert sorted(verified(secret, r)["data"]["n"] for r in requests) == list(range(200))


def test_a_dead_senders_claims_are_sent_again_once_its_lease_ends(tmp_path: Path) -> None:
    with receiving() as receiver:
        sessions, _ = write_deliveries(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", receiver, 3)
        dead = dispatcher(sessions)
        assert len(dead.claim(10)) == 3  # then it dies without sending
        alive = dispatcher(sessions)
        assert alive.claim(10) == [], "held under the dead sender's lease"
        # A minute on, the dead sender's lease has run out.
        later = dispatcher(sessions, now=lambda: utcnow() + timedelta(minutes=1)).start()
        try:
            receiver.wait_for("the three deliveries", lambda seen: len(seen) == 3)
        finally:
            later.stop()
        assert len(receiver.ids()) == 3


def test_a_delivery_is_given_up_after_its_retry_period(tmp_path: Path) -> None:
    with receiving(lambda request, seen: 500) as receiver:
        sessions, _ = write_deliveries(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", receiver, 1)
        sender = dispatcher(sessions, webhook_retry_period=timedelta(milliseconds=400)).start()
        try:
            counts = until(
                lambda: (c := WebhookStore(sessions).delivery_counts())["failed"] == 1 and c,
                what="the delivery given up",
            )
        finally:
            sender.stop()
        assert counts == {"pending": 0, "delivered": 0, "failed": 1}
        assert len(receiver.received) >= 2, "it was retried before it was given up"
