"""Times in query strings: every listing that takes one reads it with the same parser as
analytics, so a time that cannot be placed in UTC is a 422 that says why, never a 500."""

from __future__ import annotations

import pytest

from .conftest import Server

pytestmark = pytest.mark.model

# Valid ISO 8601 that Python parses, but whose zone moves it past year 9999 (or before
# year 1) in UTC: the database layer's conversion overflowed.
OVERFLOWING = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]


@pytest.mark.parametrize("value", OVERFLOWING)
@pytest.mark.parametrize("field", ["since", "until"])
def test_a_time_outside_utc_range_is_a_422_on_the_job_list(
    server: Server, field: str, value: str
) -> None:
    response = server.get("/api/jobs", params={field: value})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == f"invalid_{field}"
    assert value in error["message"]
    server.assert_healthy()


@pytest.mark.parametrize("value", OVERFLOWING)
def test_analytics_refuses_the_same_times_the_same_way(server: Server, value: str) -> None:
    response = server.get("/api/analytics", params={"since": value})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_since"


def test_the_job_list_reads_times_as_analytics_does(server: Server) -> None:
    """A time without a zone is UTC (it was a 500: a naive time reached the database), and
    a '+' that the URL turned into a space gets the hint."""
    job = server.good_job
    for since in ("2000-01-01T00:00:00", "2000-01-01T00:00:00Z", "2000-01-01"):
        listing = server.get("/api/jobs", params={"since": since})
        assert listing.status_code == 200, (since, listing.text)
        assert job["id"] in [j["id"] for j in listing.json()["items"]]
    before = server.get("/api/jobs", params={"until": "2000-01-01T01:00:00+01:00"})
    assert before.status_code == 200 and before.json()["items"] == []
    spaced = server.get("/api/jobs?since=2000-01-01T00:00:00+01:00")
    assert spaced.status_code == 422 and "%2B" in spaced.json()["error"]["message"]
