"""BG Remover: background removal with ISNet and a trustworthy job system.

Names are imported on first use (as in ``jobs`` and ``engine``): every command starts by
importing this package, and ``bgremover --help`` should not load the model runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import load_remover, remove, remove_clip
    from .config import Settings
    from .engine import (
        Cancelled,
        CancelToken,
        EngineError,
        InputError,
        ModelError,
        OutputFormat,
        Removal,
        RemoveOptions,
        Remover,
        Stage,
    )

_HOMES = {
    "load_remover": "api",
    "remove": "api",
    "remove_clip": "api",
    "Settings": "config",
    "CancelToken": "engine",
    "Cancelled": "engine",
    "EngineError": "engine",
    "InputError": "engine",
    "ModelError": "engine",
    "OutputFormat": "engine",
    "Removal": "engine",
    "RemoveOptions": "engine",
    "Remover": "engine",
    "Stage": "engine",
}

__all__ = [
    "CancelToken",
    "Cancelled",
    "EngineError",
    "InputError",
    "ModelError",
    "OutputFormat",
    "Removal",
    "RemoveOptions",
    "Remover",
    "Settings",
    "Stage",
    "load_remover",
    "remove",
    "remove_clip",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
