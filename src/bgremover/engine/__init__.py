"""Pure image work: decode, model registry and fetch, the six stages, encode.

Nothing here knows about jobs, databases or the web.
"""

from .cancel import CancelToken
from .errors import Cancelled, EngineError, InputError, ModelError, OutputError
from .options import OutputFormat, RemoveOptions
from .remover import BatchItem, BatchPlan, Removal, Remover, plan_batch
from .stages import STAGE_WEIGHTS, STAGES, ProgressCallback, Stage, overall_percent

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
