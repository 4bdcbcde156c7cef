"""The parts behind tests/security/test_auth.py, where a clock or a database is the point:
which tokens are weak, how the failure throttle forgets and stays bounded, and when a login
ends."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.logins import LoginStore
from bgremover.web.throttle import FailureThrottle, client_key
from bgremover.web.tokens import new_token, weakness


@pytest.mark.parametrize(
    "weak",
    [
        "7",
        "tok-3f9a1c77d2e0b845",  # 20 characters
        "a" * 64,
        "ab" * 20,
        "abcdefgh" * 5,  # 8 different characters, but one unit repeated
        "1234567890" * 3 + "12",  # 32 digits: about 106 bits
    ],
)
def test_short_one_kind_and_repetitive_tokens_are_weak(weak: str) -> None:
    assert weakness(weak) is not None


@pytest.mark.parametrize(
    "good",
    [new_token(), secrets.token_hex(16), secrets.token_hex(32), secrets.token_urlsafe(24)],
    ids=["new_token", "hex16", "hex32", "urlsafe24"],  # the same names in every test process
)
def test_random_tokens_of_128_bits_or_more_are_good(good: str) -> None:
    assert weakness(good) is None


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_the_limit_until_its_oldest_failure_ages_out() -> None:
    clock = Clock()
    throttle = FailureThrottle(3, 60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("203.0.113.9") is None
        throttle.failed("203.0.113.9")
        clock.now += 10
    assert throttle.retry_after("203.0.113.9") == pytest.approx(30)
    assert throttle.retry_after("203.0.113.10") is None
    clock.now += 30
    assert throttle.retry_after("203.0.113.9") is None  # the first failure is 60 s old
    clock.now += 60
    assert throttle.retry_after("203.0.113.9") is None and len(throttle) == 0


def test_the_table_of_addresses_is_bounded_and_ipv6_counts_by_its_64() -> None:
    clock = Clock()
    throttle = FailureThrottle(2, 60, max_addresses=100, clock=clock)
    for index in range(10_000):
        throttle.failed(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}")
    assert len(throttle) == 100
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    throttle.failed("2001:db8::1")
    throttle.failed("2001:db8::2")
    assert throttle.retry_after("2001:db8::3") is not None


def test_a_login_ends_at_its_expiry_and_expired_ones_are_deleted(database_url: str) -> None:
    engine = connect(database_url)
    migrate(engine)
    logins = LoginStore(session_factory(engine))
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    try:
        logins.add("a" * 64, now, now + timedelta(hours=1))
        assert logins.alive("a" * 64, now + timedelta(minutes=59))
        assert not logins.alive("a" * 64, now + timedelta(hours=1))
        assert not logins.alive("b" * 64, now)
        later = now + timedelta(hours=2)
        logins.add("b" * 64, later, later + timedelta(hours=1))  # deletes the expired one
        assert logins.end_all() == 1
    finally:
        engine.dispose()
