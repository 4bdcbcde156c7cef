"""Model registry, download and cache. Importing this registers the built-in models."""

from .base import SegmentationModel, get_model, register, registered_models
from .hashes import sha256_file
from .isnet import IsNet, IsNetGeneralUse, IsNetGeneralUseQuint8
from .store import ModelStore, ResolvedModel

__all__ = [
    "IsNet",
    "IsNetGeneralUse",
    "IsNetGeneralUseQuint8",
    "ModelStore",
    "ResolvedModel",
    "SegmentationModel",
    "get_model",
    "register",
    "registered_models",
    "sha256_file",
]
