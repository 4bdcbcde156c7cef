"""Failed access-token guesses per client address: after ``max_failures`` within ``window``
seconds an address is refused (429) until its oldest failure leaves the window. Successful
requests never count. Memory is bounded: at most ``max_addresses`` are remembered (the one
that failed least recently is forgotten first), and an IPv6 client counts by its /64, which
one machine usually holds whole. Each web process counts its own clients."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable


def client_key(address: str | None) -> str:
    """The address a client is counted by: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureThrottle:
    def __init__(
        self,
        max_failures: int,
        window: float,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window = window
        self._max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, address: str | None) -> float | None:
        """Seconds until ``address`` may try a token again; None when it may now."""
        key = client_key(address)
        times = self._failures.get(key)
        if times is None:
            return None
        now = self._clock()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        if len(times) < self._max_failures:
            return None
        return times[0] + self._window - now

    def failed(self, address: str | None) -> None:
        """``address`` sent a wrong token."""
        key = client_key(address)
        times = self._failures.pop(key, None) or deque(maxlen=self._max_failures)
        times.append(self._clock())
        self._failures[key] = times
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)
