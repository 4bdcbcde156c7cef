"""Logs and probes as an orchestrator and a log shipper meet them.

A real `bgremover serve` with ``BGREMOVER_LOG_FORMAT=json`` and a token, on a PostgreSQL of
its own: every line it and its worker processes write is one JSON object; the lines a run
writes carry the run's job, batch and dispatch ids and its worker; a token sent in a URL
never reaches the log. Its probes answer without the token: live while the process runs,
ready only while the database answers (503, with no error text, while it is down). In
process: not ready before the app's start-up has finished; the probes are in ``/docs``.
(A Celery worker's JSON lines: tests/test_broker_faults.py.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bgremover import Settings
from bgremover.logs import SHOWN_AT_INFO, bound, configure
from bgremover.web import create_app

from .postgres_support import PrivatePostgres, private_postgres
from .serving import UI, follow, job_ended, json_lines, served
from .waiting import until

TOKEN = "Qm3XbV9dK2pLw7RtYc4Hs8JfNa6Ue1Zg5Oi0TyPqWxE"
RUN_FIELDS = ("job_id", "batch_id", "dispatch_id", "worker")


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


def test_json_logs_carry_the_run_and_probes_follow_the_database(
    tmp_path: Path, tiny_model: Path, photos: dict[str, Path], postgres: PrivatePostgres
) -> None:
    env = {
        "BGREMOVER_LOG_FORMAT": "json",
        "BGREMOVER_TOKEN": TOKEN,
        "BGREMOVER_DATABASE_URL": postgres.url,
        "BGREMOVER_MODEL_PATH": str(tiny_model),
        "BGREMOVER_MAX_CONCURRENT_JOBS": "1",
    }
    log = tmp_path / "server.log"
    auth = {**UI, "Authorization": f"Bearer {TOKEN}"}
    with served(tmp_path / "data", env=env, log=log) as (url, process):
        assert httpx.get(f"{url}/api/health/live", timeout=10).status_code == 200
        ready = httpx.get(f"{url}/api/health/ready", timeout=10)
        assert (ready.status_code, ready.json()["status"]) == (200, "ready"), ready.text

        photo = photos["coffee.jpg"]
        created = httpx.post(
            f"{url}/api/batches",
            files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))],
            headers=auth, timeout=60,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        batch_id = created.json()["batch"]["id"]
        job_id = created.json()["jobs"][0]["id"]
        follow(url, job_ended({job_id}), headers=auth)
        job = httpx.get(f"{url}/api/jobs/{job_id}", headers=auth, timeout=30).json()
        assert job["status"] == "completed", job
        # A browser's download link carries the token in its URL.
        result = httpx.get(f"{url}/api/jobs/{job_id}/result", params={"token": TOKEN}, timeout=30)
        assert result.status_code == 200

        postgres.crash()
        down = until(
            lambda: (
                (r := httpx.get(f"{url}/api/health/ready", timeout=30)).status_code == 503 and r
            ),
            what="not ready while the database is down",
        )
        assert down.json()["status"] == "unavailable"
        assert down.json()["dependencies"] == {"database": "unavailable"}, down.text
        assert httpx.get(f"{url}/api/health/live", timeout=10).status_code == 200
        postgres.start()
        until(
            lambda: httpx.get(f"{url}/api/health/ready", timeout=30).status_code == 200,
            what="ready again once the database is back",
        )
        web_pid = process.pid

    text = log.read_text()
    assert TOKEN not in text
    lines = json_lines(log)
    for entry in lines:
        assert {"timestamp", "level", "logger", "message", "pid"} <= entry.keys(), entry
        assert entry["timestamp"].endswith("Z"), entry
    assert any(e["logger"] == "uvicorn.access" for e in lines), "no access log line"
    assert any("database" in e["message"] and "unreachable" in e["message"] for e in lines)

    run_lines = [e for e in lines if e.get("job_id") == job_id]
    in_worker = [e for e in run_lines if e["pid"] != web_pid]
    assert in_worker, f"the worker process wrote no line about the run: {run_lines}"
    for entry in run_lines:
        assert entry["batch_id"] == batch_id and entry["dispatch_id"], entry
        assert entry["worker"].startswith("local-1 (pid "), entry
    # Every line a worker process wrote while it ran the job says which run it belongs to.
    dispatch = in_worker[0]["dispatch_id"]
    assert all(e["dispatch_id"] == dispatch for e in in_worker), in_worker


def test_probes_say_starting_until_the_app_has_started_and_show_in_the_docs(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(data_dir=tmp_path, token=TOKEN))
    client = TestClient(app, base_url="http://localhost")  # start-up not run
    assert client.get("/api/health/live").status_code == 200
    ready = client.get("/api/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "starting"
    paths = client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert {"/api/health/live", "/api/health/ready"} <= paths["paths"].keys()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``configure`` changes the process's logging: put pytest's back after the test."""
    loggers = [logging.getLogger(name) for name in ("", *SHOWN_AT_INFO)]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    logging.captureWarnings(False)
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _log_a_failed_run() -> None:
    log = logging.getLogger("bgremover.test")
    with bound(job_id="j1", worker="local-1 (pid 7)"):
        try:
            raise ValueError("the image is odd")
        except ValueError:
            log.exception("the run failed")
    log.info("after the run")


def test_a_line_carries_the_bound_run_and_its_exception_in_either_format(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json")
    _log_a_failed_run()
    failed, after = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert failed["message"] == "the run failed" and failed["level"] == "error"
    assert (failed["job_id"], failed["worker"]) == ("j1", "local-1 (pid 7)")
    assert failed["exception"].endswith("ValueError: the image is odd")
    assert "job_id" not in after, "the run's fields outlived it"

    configure("text")
    _log_a_failed_run()
    text = capsys.readouterr().err
    assert text.startswith(
        "ERROR:  bgremover.test: the run failed [job_id=j1 worker=local-1 (pid 7)]\n"
        "Traceback (most recent call last):\n"
    ), text
    assert text.endswith("ValueError: the image is odd\nINFO:  bgremover.test: after the run\n")
