"""The webhook address guard's decisions, on addresses and URLs, without connecting anywhere:
private, link-local, public and IPv4-carrying IPv6 addresses are judged, never reached.
(Literal addresses resolve without a DNS query.)"""

from __future__ import annotations

from ipaddress import ip_address

import httpx
import pytest

from bgremover.webhooks.guard import Refused, check_form, next_hop, refusal, resolve

NEVER = {
    "0.0.0.0": "an unspecified address",
    "0.1.2.3": "an unspecified address",
    "::": "an unspecified address",
    "169.254.169.254": "a link-local address",  # cloud metadata
    "fe80::1": "a link-local address",
    "::ffff:169.254.169.254": "a link-local address",
    "224.0.0.1": "a multicast address",
    "ff02::1": "a multicast address",
    "240.0.0.1": "a reserved address",
    "255.255.255.255": "a reserved address",
    "192.0.2.10": "a reserved address",  # documentation
    "198.18.0.1": "a reserved address",  # benchmarking
    "2001:db8::1": "a reserved address",
    "::7f00:1": "a reserved address",  # IPv4-compatible (deprecated)
    "::ffff:0:7f00:1": "a reserved address",  # IPv4-translated
}
ONLY_IF_ALLOWED = {
    "127.0.0.1": "a loopback address",
    "127.8.9.10": "a loopback address",
    "::1": "a loopback address",
    "::ffff:127.0.0.1": "a loopback address",
    "10.1.2.3": "a private address",
    "172.16.0.1": "a private address",
    "172.31.255.254": "a private address",
    "192.168.1.1": "a private address",
    "100.64.0.1": "a private address",  # carrier-grade NAT
    "fd00::1": "a private address",
    "::ffff:10.0.0.1": "a private address",
    "::ffff:192.168.0.1": "a private address",
    "64:ff9b::a00:1": "a private address",  # NAT64 to 10.0.0.1
    "2002:c0a8:101::1": "a private address",  # 6to4 of 192.168.1.1
}
PUBLIC = ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:1.1.1.1"]


@pytest.mark.parametrize("address", NEVER)
def test_unspecified_multicast_link_local_and_reserved_addresses_are_never_targets(
    address: str,
) -> None:
    for allow_private in (False, True):
        assert refusal(ip_address(address), allow_private=allow_private) == NEVER[address]


@pytest.mark.parametrize("address", ONLY_IF_ALLOWED)
def test_loopback_and_private_addresses_are_targets_only_when_allowed(address: str) -> None:
    assert refusal(ip_address(address), allow_private=False) == ONLY_IF_ALLOWED[address]
    assert refusal(ip_address(address), allow_private=True) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_targets(address: str) -> None:
    assert refusal(ip_address(address), allow_private=False) is None


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    with pytest.raises(Refused, match=r"localhost \((127\.0\.0\.1|::1)\) is a loopback address"):
        resolve("localhost", 80, allow_private=False)
    # The spellings the resolver reads as 127.0.0.1 are caught after resolution.
    for spelling in ("2130706433", "0x7f.1", "127.1"):
        with pytest.raises(Refused, match="loopback"):
            resolve(spelling, 80, allow_private=False)
    assert resolve("127.0.0.1", 80, allow_private=True) == [ip_address("127.0.0.1")]
    assert resolve("8.8.8.8", 443, allow_private=False) == [ip_address("8.8.8.8")]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "must start with https:// or http://"),
        ("file:///etc/passwd", "must start with https:// or http://"),
        ("http://user:secret@example.com/hook", "user name or password"),
        ("https:///hook", "needs a host name"),
        ("https://example.com/" + "a" * 2000, "at most 2000 characters"),
    ],
)
def test_a_url_of_the_wrong_form_is_refused(url: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        check_form(url)


def test_each_redirect_is_checked_for_its_form_and_leads_where_it_says() -> None:
    here = httpx.URL("https://hooks.example.com/a/b")
    assert str(next_hop(here, "/c")) == "https://hooks.example.com/c"
    assert str(next_hop(here, "https://other.example.com/x")) == "https://other.example.com/x"
    for location in ("gopher://example.com/", "http://me:pw@example.com/", "file:///etc/passwd"):
        with pytest.raises(Refused, match="redirected to a target that is not allowed"):
            next_hop(here, location)
    # Where it leads is then judged by address when the sender connects (resolve above).
    target = next_hop(here, "http://[::ffff:169.254.169.254]/latest/meta-data")
    assert refusal(ip_address(target.host), allow_private=True) == "a link-local address"
