"""A process says once that it lost a dependency and once that it has it back, however many
of its threads meet the outage, and retries work until the dependency answers."""

from __future__ import annotations

import logging
import threading

import pytest

from bgremover.dependencies import Dependencies


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bgremover.dependencies"]


def test_an_outage_met_by_many_threads_is_said_once_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bgremover.dependencies")
    dependencies = Dependencies()
    threads = [
        threading.Thread(target=dependencies.lost, args=("redis", ConnectionError(f"refused {i}")))
        for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = dependencies.states()["redis"]
    assert not state.ok and state.error is not None and state.error.startswith("refused")
    for _ in range(5):
        dependencies.regained("redis")
    said = _said(caplog)
    assert len(said) == 2, said
    assert said[0].startswith("redis unreachable (refused")
    assert said[1].startswith("redis answers again after")
    assert dependencies.states()["redis"].as_json()["ok"] is True


def test_retry_waits_out_an_outage_and_lets_other_errors_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bgremover.dependencies")
    dependencies = Dependencies()
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("the database is restarting")
        return "written"

    outage = lambda exc: isinstance(exc, ConnectionError)  # noqa: E731
    assert dependencies.retry("database", flaky, outage) == "written"
    assert len(attempts) == 4
    assert len(_said(caplog)) == 2  # lost once, back once

    def broken() -> None:
        raise ValueError("a bad statement is not an outage")

    with pytest.raises(ValueError):
        dependencies.retry("database", broken, outage)
    assert dependencies.states()["database"].ok
