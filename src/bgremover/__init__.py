"""BG Remover: background removal with ISNet and a trustworthy job system."""

from .api import load_remover, remove
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
]
__version__ = "0.1.0"
