"""Access tokens and logins as an attacker meets them: a weak token is refused at start,
guessing is throttled per client address, and the browser's login cookie is a random,
expiring, revocable value that only this deployment's database knows (a fixed value derived
from the token was sent by the browser to every app on localhost and replayable)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ..jobs_support import postgres_database
from ..serving import UI, free_port, served

TOKEN = secrets.token_urlsafe(32)
LIFETIME = 3600


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client(address: str = "127.0.0.1") -> httpx.Client:
    """A client whose requests come from ``address`` (any of 127.0.0.0/8 reaches the server)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60)


def cookie_name(url: str) -> str:
    return f"bgremover_auth_{urlsplit(url).port}"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[tuple[str, str, str]]:
    """Two web processes of one deployment (one PostgreSQL database), and another
    deployment (its own database) with the same token."""
    env = {
        "BGREMOVER_MODEL_PATH": str(tiny_model),
        "BGREMOVER_AUTH_MAX_FAILURES": "5",
        "BGREMOVER_LOGIN_LIFETIME": str(LIFETIME),
    }
    with postgres_database() as database:
        shared = {**env, "BGREMOVER_DATABASE_URL": database}
        root = tmp_path_factory.mktemp("auth")
        with (
            served(root / "a", "--token", TOKEN, env=shared) as (a, _),
            served(root / "b", "--token", TOKEN, env=shared) as (b, _),
            served(root / "other", "--token", TOKEN, env=env) as (other, _),
        ):
            yield a, b, other


def login(url: str, address: str = "127.0.0.1", **headers: str) -> httpx.Response:
    with client(address) as c:
        return c.post(f"{url}/api/login", headers={**bearer(TOKEN), **headers})


@pytest.mark.parametrize(
    "weak",
    ["7", "correct-horse", "a" * 64, "ab" * 20, "12345678901234567890123456789012"],
)
def test_a_weak_token_is_refused_at_start_with_the_command_that_makes_a_good_one(
    tmp_path: Path, weak: str
) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "bgremover", "serve", "--port", str(free_port()), "--token", weak],
        env={**os.environ, "BGREMOVER_DATA_DIR": str(tmp_path), "NO_COLOR": "1"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 2, started.stdout + started.stderr
    assert "bgremover token" in started.stderr and repr(weak) not in started.stderr


def test_bgremover_token_prints_a_fresh_token_that_a_server_takes(
    tmp_path: Path, tiny_model: Path
) -> None:
    made = [
        subprocess.run(
            [sys.executable, "-m", "bgremover", "token"], capture_output=True, text=True,
            check=True, timeout=120,
        ).stdout.strip()
        for _ in range(2)
    ]  # fmt: skip
    assert made[0] != made[1] and len(made[0]) >= 43
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model)}
    with served(tmp_path, "--token", made[0], env=env) as (url, _):
        assert httpx.get(f"{url}/api/jobs", headers=bearer(made[0])).status_code == 200


def test_guessing_from_one_address_gets_429_and_no_one_else_is_slowed(
    cluster: tuple[str, str, str],
) -> None:
    url = cluster[0]
    with client("127.0.0.2") as attacker, client("127.0.0.1") as user:
        for guess in range(5):
            wrong = attacker.get(f"{url}/api/jobs", headers=bearer(f"guess-{guess}"))
            assert wrong.status_code == 401
        blocked = attacker.get(f"{url}/api/jobs", headers=bearer("guess-5"))
        assert blocked.status_code == 429, blocked.text
        assert blocked.json()["error"]["code"] == "too_many_failures"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        # A locked-out address learns nothing, not even that a guess was right.
        assert attacker.get(f"{url}/api/jobs", headers=bearer(TOKEN)).status_code == 429
        assert attacker.get(f"{url}/api/events?token={TOKEN}").status_code == 429
        for _ in range(20):  # successes never count
            assert user.get(f"{url}/api/jobs", headers=bearer(TOKEN)).status_code == 200
        assert user.get(f"{url}/api/jobs", headers=bearer("typo")).status_code == 401


def test_a_cookie_derived_from_the_token_is_no_key(cluster: tuple[str, str, str]) -> None:
    """The old cookie: HMAC(token, "bgremover-cookie"), the same on every server with that
    token and never expiring. Whoever saw it (any app on localhost does) could replay it."""
    url, _, other = cluster
    fixed = hmac.new(TOKEN.encode(), b"bgremover-cookie", hashlib.sha256).hexdigest()
    for server in (url, other):
        forged = httpx.get(f"{server}/api/jobs", cookies={cookie_name(server): fixed})
        assert forged.status_code == 401
    answer = httpx.get(f"{url}/api/jobs", headers=bearer(TOKEN))
    assert answer.status_code == 200 and "set-cookie" not in answer.headers


def test_a_login_is_random_expiring_and_valid_on_every_process_of_the_deployment_only(
    cluster: tuple[str, str, str],
) -> None:
    a, b, other = cluster
    first, second = login(a), login(a)
    assert first.status_code == 204, first.text
    name = cookie_name(a)
    header = first.headers["set-cookie"].lower()
    assert header.startswith(f"{name}=")
    for part in ("httponly", "samesite=strict", f"max-age={LIFETIME}", "path=/"):
        assert part in header
    assert "secure" not in header and TOKEN.lower() not in header
    value = first.cookies[name]
    assert value != second.cookies[name] and len(value) >= 43
    assert httpx.get(f"{a}/api/jobs", cookies={name: value}).status_code == 200
    # Behind one load balancer the browser sees one origin (Host) whichever process answers.
    via_b = httpx.get(f"{b}/api/jobs", cookies={name: value}, headers={"Host": urlsplit(a).netloc})
    assert via_b.status_code == 200
    replayed = httpx.get(f"{other}/api/jobs", cookies={cookie_name(other): value})
    assert replayed.status_code == 401


def test_logout_ends_this_login_everywhere_ends_all(cluster: tuple[str, str, str]) -> None:
    a, b, _ = cluster
    name = cookie_name(a)
    first, second, third = (login(a).cookies[name] for _ in range(3))
    out = httpx.post(f"{a}/api/logout", cookies={name: first}, headers=UI)
    assert out.status_code == 204 and "max-age=0" in out.headers["set-cookie"].lower()
    host = {"Host": urlsplit(a).netloc}
    assert httpx.get(f"{b}/api/jobs", cookies={name: first}, headers=host).status_code == 401
    assert httpx.get(f"{a}/api/jobs", cookies={name: second}).status_code == 200
    everywhere = httpx.post(
        f"{b}/api/logout", params={"everywhere": "true"}, cookies={name: second},
        headers={**UI, **host},
    )  # fmt: skip
    assert everywhere.status_code == 204
    for value in (second, third):
        assert httpx.get(f"{a}/api/jobs", cookies={name: value}).status_code == 401


def test_the_cookie_is_secure_behind_an_https_proxy_the_server_trusts(
    cluster: tuple[str, str, str],
) -> None:
    a = cluster[0]
    proxied = login(a, "127.0.0.1", **{"X-Forwarded-Proto": "https"})
    assert "; secure" in proxied.headers["set-cookie"].lower()
    claimed = login(a, "127.0.0.3", **{"X-Forwarded-Proto": "https"})  # not a trusted proxy
    assert claimed.status_code == 204 and "secure" not in claimed.headers["set-cookie"].lower()


def test_a_restart_keeps_the_logins_and_a_new_token_ends_them(
    tmp_path: Path, tiny_model: Path
) -> None:
    with postgres_database() as database:
        env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_DATABASE_URL": database}
        with served(tmp_path / "1", "--token", TOKEN, env=env) as (url, _):
            name, host = cookie_name(url), {"Host": urlsplit(url).netloc}
            value = login(url).cookies[name]
        with served(tmp_path / "2", "--token", TOKEN, env=env) as (again, _):
            kept = httpx.get(f"{again}/api/jobs", cookies={name: value}, headers=host)
            assert kept.status_code == 200
        with served(tmp_path / "3", "--token", secrets.token_urlsafe(32), env=env) as (new, _):
            ended = httpx.get(f"{new}/api/jobs", cookies={name: value}, headers=host)
            assert ended.status_code == 401


def test_a_login_cookie_gives_no_unthrottled_way_to_test_guesses_of_the_token(
    cluster: tuple[str, str, str],
) -> None:
    """Whoever holds a login (one the user made on a shared machine, say) must not be able
    to try tokens without limit: a wrong token beside the cookie is a wrong token."""
    url = cluster[0]
    cookie = login(url, "127.0.0.4").cookies[cookie_name(url)]
    with client("127.0.0.4") as holder:
        holder.cookies.set(cookie_name(url), cookie)
        assert holder.get(f"{url}/api/jobs").status_code == 200  # the cookie alone is a key
        answers = [
            holder.post(f"{url}/api/login", headers=bearer(f"guess-{n}")).status_code
            for n in range(6)
        ]
    assert answers == [401] * 5 + [429]
