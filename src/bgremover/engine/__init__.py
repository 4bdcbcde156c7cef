"""Pure image work: decode, model registry and fetch, the six stages, encode.

Nothing here knows about jobs, databases or the web. Names are imported on first use (as in
``jobs``), so a module that needs only ``engine.stages`` or ``engine.options`` does not load
numpy, Pillow and onnxruntime with it (``bgremover --help`` starts without them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cancel import CancelToken
    from .errors import Cancelled, EngineError, InputError, ModelError, OutputError
    from .options import RemoveOptions
    from .output_format import OutputFormat
    from .remover import BatchItem, BatchPlan, Removal, Remover, plan_batch
    from .stages import STAGE_WEIGHTS, STAGES, ProgressCallback, Stage, overall_percent

_HOMES = {
    "CancelToken": "cancel",
    "Cancelled": "errors",
    "EngineError": "errors",
    "InputError": "errors",
    "ModelError": "errors",
    "OutputError": "errors",
    "OutputFormat": "output_format",
    "RemoveOptions": "options",
    "BatchItem": "remover",
    "BatchPlan": "remover",
    "Removal": "remover",
    "Remover": "remover",
    "plan_batch": "remover",
    "STAGES": "stages",
    "STAGE_WEIGHTS": "stages",
    "ProgressCallback": "stages",
    "Stage": "stages",
    "overall_percent": "stages",
}

__all__ = [
    "STAGES",
    "STAGE_WEIGHTS",
    "BatchItem",
    "BatchPlan",
    "CancelToken",
    "Cancelled",
    "EngineError",
    "InputError",
    "ModelError",
    "OutputError",
    "OutputFormat",
    "ProgressCallback",
    "Removal",
    "RemoveOptions",
    "Remover",
    "Stage",
    "overall_percent",
    "plan_batch",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)
