"""Errors the engine raises, each with a stable code and a message a person can act on.

The code is for programs (the job store keeps it, the HTTP API returns it); the message is
for people and names the file and the fix where there is one.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InputError(EngineError):
    """The input cannot be processed: empty, not an image, truncated, too large, unreadable."""

    code = "invalid_input"


class OutputError(EngineError):
    """The result could not be written where it was asked to go. ``errno`` is the OS error
    behind it, if any: a full or failing disk (ENOSPC, EIO, ...) is not the image's fault,
    and a job server waits for it instead of failing the image."""

    code = "output_unwritable"

    def __init__(self, message: str, *, code: str | None = None, errno: int | None = None):
        super().__init__(message, code=code)
        self.errno = errno


class ModelError(EngineError):
    """The model is missing, corrupt, or could not be fetched or loaded."""

    code = "model_unavailable"


class Cancelled(EngineError):
    """The work was cancelled through its token; not a failure of the input."""

    code = "cancelled"

    def __init__(self, message: str = "Cancelled") -> None:
        super().__init__(message)
