"""Access tokens: how to make a good one, and which ones a server refuses to start with.

A token cannot be measured, only estimated. The estimate here is an upper bound: length ×
log2(the size of the character kinds it uses: digits 10, lower and upper case letters 26 each,
anything else 33). With at least 32 characters, 8 different ones, no repeated unit and 128
estimated bits, it refuses short, one-kind and repetitive tokens (``7``, 32 digits, ``ab`` × 20);
it cannot tell a phrase someone chose from a random one, which is why the message points to
``bgremover token``.
"""

from __future__ import annotations

import math
import secrets
import string

MIN_LENGTH = 32
MIN_DISTINCT = 8
MIN_BITS = 128
_KINDS = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
_OTHER = 33  # printable ASCII punctuation and space


def new_token() -> str:
    """43 URL-safe characters from the OS's random source: 256 bits."""
    return secrets.token_urlsafe(32)


def estimated_bits(token: str) -> float:
    alphabet = sum(len(kind) for kind in _KINDS if any(ch in kind for ch in token))
    if any(not any(ch in kind for kind in _KINDS) for ch in token):
        alphabet += _OTHER
    return len(token) * math.log2(alphabet) if alphabet > 1 else 0.0


def weakness(token: str) -> str | None:
    """Why ``token`` is too weak to protect a server, or None when it is good enough."""
    if len(token) < MIN_LENGTH:
        return f"it has {len(token)} characters, fewer than {MIN_LENGTH}"
    if len(set(token)) < MIN_DISTINCT or (token + token).find(token, 1) < len(token):
        return "it repeats a few characters"
    if (bits := estimated_bits(token)) < MIN_BITS:
        return f"its characters are worth about {bits:.0f} bits, fewer than {MIN_BITS}"
    return None


def weak_token_message(token: str) -> str | None:
    """The refusal for a weak ``token`` (never showing it), or None when it is good enough."""
    reason = weakness(token)
    if reason is None:
        return None
    return (
        f"refusing to serve with a weak access token ({reason}): guessing it would be quick. "
        f"Use at least {MIN_LENGTH} random characters (about {MIN_BITS} bits); "
        "`bgremover token` prints a new one to put in BGREMOVER_TOKEN"
    )
