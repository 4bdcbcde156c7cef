"""Where originals, results and background images live: one small contract, two backends.

``files.FileStore`` names every file by a key it derives itself ("originals/ab/<sha256>",
"results/ab/<job id>.png"); a backend only stores bytes under keys. The data dir is the
default; an S3-compatible bucket lets web processes and workers on other machines share files.
"""

from .base import Storage, StorageError, check_key
from .faults import StorageUnavailable, outage_reason
from .local import LocalStorage
from .opening import open_storage

__all__ = [
    "LocalStorage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "check_key",
    "open_storage",
    "outage_reason",
]
