"""Model registry, download and cache. Importing this registers the built-in models."""

from .base import (
    SegmentationModel,
    families,
    get_family,
    get_model,
    register,
    register_family,
    registered_models,
)
from .birefnet import BiRefNet
from .bria import BriaRmbg
from .catalog import CatalogEntry, ModelCatalog
from .hashes import sha256_file
from .isnet import IsNet, IsNetAnime, IsNetGeneralUse, IsNetGeneralUseQuint8
from .store import ModelStore, ResolvedModel
from .u2net import U2Net

__all__ = [
    "BiRefNet",
    "BriaRmbg",
    "CatalogEntry",
    "IsNet",
    "IsNetAnime",
    "IsNetGeneralUse",
    "IsNetGeneralUseQuint8",
    "ModelCatalog",
    "ModelStore",
    "ResolvedModel",
    "SegmentationModel",
    "U2Net",
    "families",
    "get_family",
    "get_model",
    "register",
    "register_family",
    "registered_models",
    "sha256_file",
]
