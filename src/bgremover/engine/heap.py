"""Hand freed heap memory back to the operating system (glibc only; a no-op elsewhere).

glibc keeps freed blocks of its main heap for reuse. Loading the model parses the whole ONNX
file (176 MB for ISNet in fp32) into buffers that are freed once the session holds its
weights, yet stay in the process: 470 MB resident after the load, 241 MB once trimmed
(issue 11's note). Two workers kept that twice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        return None
    return trim


def release_free_heap() -> None:
    """Return the heap's free pages to the OS; takes milliseconds."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
