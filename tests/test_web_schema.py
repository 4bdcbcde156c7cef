"""Schemathesis against the OpenAPI schema: no generated request may cause a 5xx."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from bgremover import Settings
from bgremover.system import JobSystem
from bgremover.web import create_app

from .serving import UI

pytestmark = pytest.mark.model

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root: Path = tmp_path_factory.mktemp("schema")
    # Schemathesis' ASGI client calls itself "testserver"; allow it like a deployment would.
    config = Settings(
        data_dir=root, max_concurrent_jobs=1, max_upload_bytes=2_000_000,
        allowed_hosts=["testserver"],
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch, JobSystem(config) as system:
        patch.setattr(socket, "getaddrinfo", _loopback_names_only)
        yield schemathesis.openapi.from_asgi("/openapi.json", create_app(config, system=system))


_getaddrinfo = socket.getaddrinfo


def _loopback_names_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Generated webhook URLs name hosts anywhere: here none resolves (no DNS query leaves
    the machine, and no webhook can be sent beyond it) but loopback ones, which the guard
    refuses."""
    try:
        loopback = ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise socket.gaierror(socket.EAI_NONAME, "the schema test resolves no names")
    return _getaddrinfo(host, *args, **kwargs)


def test_no_generated_request_causes_a_server_error(api_schema: schemathesis.BaseSchema) -> None:
    # Schemathesis' own pytest plugin does not load under pytest 9, so drive its case
    # strategies with Hypothesis directly, one operation at a time.
    failures: list[str] = []
    tested = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/events":
            continue  # an endless stream; covered by the served tests

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=UI)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.text[:300]}")
            if response.status_code == 403:
                failures.append(f"{case.method} {case.formatted_path}: refused as cross-site")

        check()
        tested += 1
    assert tested >= 20, f"only {tested} operations were exercised"
    assert not failures, "\n".join(failures)


def import_operation(api_schema: schemathesis.BaseSchema) -> Any:
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/import":
            return operation
    raise AssertionError("no /api/import in the schema")


def test_every_body_that_breaks_the_import_schema_gets_422(
    api_schema: schemathesis.BaseSchema,
) -> None:
    """Negative generation: each body violates the schema somewhere; none may get in. Bytes
    that are not even UTF-8 are a 400 (unreadable), everything else a 422 (invalid)."""
    wrong: list[str] = []

    @given(case=import_operation(api_schema).as_strategy(GenerationMode.NEGATIVE))
    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(headers=UI)
        if response.status_code not in (400, 422) or (
            response.status_code == 400 and response.json()["error"]["code"] != "bad_request"
        ):
            wrong.append(
                f"{response.status_code} for {str(case.body)[:200]}: {response.text[:200]}"
            )

    check()
    assert not wrong, "\n".join(wrong[:10])


def test_no_import_leaves_the_queue_in_a_state_the_api_cannot_serve(
    api_schema: schemathesis.BaseSchema,
) -> None:
    """Stateful: after every generated import (valid by the schema), the queue still lists,
    exports, and its own export imports again."""
    broken: list[str] = []
    accepted: list[int] = []

    @given(case=import_operation(api_schema).as_strategy())
    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        derandomize=True,  # the same generated queues for the same code and test order
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        link_rows(case.body)
        imported = case.call(headers=UI)
        if imported.status_code == 200:
            accepted.append(imported.json()["jobs"])
        if imported.status_code not in (200, 422):
            broken.append(f"import answered {imported.status_code}: {imported.text[:200]}")
        client = TestClient(api_schema.app, base_url="http://testserver", headers=UI)
        for path in ("/api/jobs?limit=1000", "/api/batches?limit=1000", "/api/sessions"):
            listed = client.get(path)
            if listed.status_code != 200:
                broken.append(f"after {str(case.body)[:200]}: {path} answered {listed.status_code}")
        exported = client.get("/api/export")
        again = client.post("/api/import", json=exported.json())
        if again.status_code != 200:
            broken.append(f"own export re-imported with {again.status_code}: {again.text[:300]}")

    check()
    assert not broken, "\n".join(broken[:10])
    assert sum(accepted) >= 10, f"too few generated jobs were imported: {accepted}"


def link_rows(body: Any) -> None:
    """Point generated batches and jobs at generated parents (random ids never match) and
    give sessions and batches plain names (most generated ones have no visible character),
    so many generated queues are importable, whatever Hypothesis' seed, and the checks after
    them see real rows."""
    if not isinstance(body, dict) or not body.get("sessions") or not body.get("batches"):
        return
    for number, row in enumerate([*body["sessions"], *body["batches"]]):
        row["name"] = f"generated {number}"
    for batch in body["batches"]:
        batch["session_id"] = body["sessions"][0]["id"]
    for job in body.get("jobs") or []:
        job["batch_id"] = body["batches"][0]["id"]
        job["options"] = {}
