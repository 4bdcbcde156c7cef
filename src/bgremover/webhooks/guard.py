"""Which servers a webhook may reach: the operator's receivers, never this machine or its
networks by way of a URL someone typed.

Every check is on addresses after DNS resolution (a name may point anywhere), on every
redirect, and the sender then connects to exactly the address that was checked (``sender``),
so a name that resolves differently a moment later (DNS rebinding) cannot slip through. An
IPv6 address that carries an IPv4 one (mapped ``::ffff:a.b.c.d``, NAT64, 6to4) is judged by
the IPv4 address it reaches.
"""

from __future__ import annotations

import ipaddress
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import httpx

IPAddress = IPv4Address | IPv6Address

PRIVATE: tuple[IPv4Network | IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
"""Networks of a site (RFC 1918, carrier-grade NAT, IPv6 unique local): allowed only with
``BGREMOVER_WEBHOOK_ALLOW_PRIVATE``."""
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
ALLOW_PRIVATE_HINT = (
    "set BGREMOVER_WEBHOOK_ALLOW_PRIVATE=1 to allow receivers on this machine or its local network"
)


class Refused(Exception):
    """A webhook target this server will not reach; the message says why and what to do."""


def reached(address: IPAddress) -> IPAddress:
    """The address a packet to ``address`` ends up at: the IPv4 address inside an IPv6 one
    that carries it, else ``address``."""
    if isinstance(address, IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in NAT64):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a webhook may not go to ``address`` ("a loopback address"), or None when it may.
    Public addresses may; loopback and private ones only when ``allow_private``;
    unspecified, multicast, link-local (where cloud metadata services answer) and reserved
    ones never."""
    target = reached(address)
    if target.is_unspecified or target in THIS_NETWORK:
        return "an unspecified address"
    if target.is_multicast:
        return "a multicast address"
    if target.is_link_local:
        return "a link-local address"
    if target.is_loopback:
        kind = "a loopback address"
    elif any(target in network for network in PRIVATE):
        kind = "a private address"
    elif target.is_global and not target.is_reserved:  # ::a.b.c.d is "global" and reserved
        return None
    else:
        return "a reserved address"
    return None if allow_private else kind


def resolve(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Every address ``host`` resolves to, each one allowed; ``Refused`` when the name does
    not resolve or any address is not allowed (a name that also points inward is refused
    whole)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"{host} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        why = refusal(address, allow_private=allow_private)
        if why is not None:
            hint = "" if allow_private else f"; {ALLOW_PRIVATE_HINT}"
            where = host if host == str(address) else f"{host} ({address})"
            raise Refused(f"{where} is {why}{hint}")
        if address not in addresses:
            addresses.append(address)
    return addresses


MAX_URL_LENGTH = 2000


def check_form(url: str | httpx.URL) -> httpx.URL:
    """``url`` as a webhook target, by its form alone: http or https, a host, no user name
    or password (they would be sent to every server in a redirect chain and shown in
    listings), at most ``MAX_URL_LENGTH`` characters. ``Refused`` otherwise."""
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise Refused(f"a webhook URL has at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise Refused(f"{text!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(f"{text!r}: a webhook URL must start with https:// or http://")
    if not parsed.host:
        raise Refused(f"{text!r}: a webhook URL needs a host name")
    if parsed.userinfo:
        raise Refused(
            "a webhook URL may not carry a user name or password; deliveries are signed, "
            "so the receiver can check them with the secret instead"
        )
    return parsed


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` if a webhook may be sent there now (its form, then every address its host
    resolves to); ``Refused`` with the reason otherwise."""
    parsed = check_form(url)
    resolve(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80),
            allow_private=allow_private)  # fmt: skip
    return str(parsed)


def next_hop(current: httpx.URL, location: str) -> httpx.URL:
    """Where a redirect from ``current`` to ``location`` leads, if its form is allowed (its
    addresses are checked when the sender connects); ``Refused`` otherwise."""
    try:
        target = current.join(location)
    except httpx.InvalidURL as exc:
        raise Refused(f"redirected to {location!r}, which is not a URL ({exc})") from None
    try:
        return check_form(target)
    except Refused as exc:
        raise Refused(f"redirected to a target that is not allowed: {exc}") from None
