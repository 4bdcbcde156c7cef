"""The one reader of times that come from outside (query strings): ISO 8601, UTC when no zone
is named, and only times that UTC can hold, so a hostile zone offset is a clear refusal here
and never an overflow in the database layer."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, aware and in UTC: what every row's times are."""
    return datetime.now(UTC)


TIME_FORM = "an ISO 8601 time such as 2026-11-29T08:00:00Z (UTC unless it names a zone)"


class InvalidTime(ValueError):
    """A time we cannot read or place in UTC; the message names the field and the value."""


def parse_time(field: str, text: str, advice: str = f"give {TIME_FORM}") -> datetime:
    """``text`` as an aware UTC datetime; otherwise ``InvalidTime`` naming ``field``, with
    ``advice`` on the forms that work."""
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone that moves it past year 1/9999
        hint = " (a '+' in a URL reads as a space: write %2B or Z)" if " " in text else ""
        raise InvalidTime(f"{field}={text!r} is not a time{hint}; {advice}") from None
