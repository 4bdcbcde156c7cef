"""Models the user added from their own ONNX files (``bgremover models add``).

One JSON file, ``catalog.json`` in the models folder, read by every process that resolves a
model name (CLI, server, local and Celery workers): point ``BGREMOVER_CACHE_DIR`` of the
machines at the same folder and they share it. An entry records the file's absolute path and
its sha256 at the time it was added, so a worker loads only the file that was checked, and a
machine that lacks the file fails the job with the fix instead of running something else.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError
from ..options import MODEL_NAME_PATTERN
from .base import SegmentationModel, get_family, registered_models
from .hashes import read_json, sha256_file, write_atomic

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class CatalogEntry:
    """One model added from a file."""

    name: str
    family: str
    path: str
    """Absolute path of the ONNX file, as given to ``models add``."""
    sha256: str
    size_bytes: int
    description: str
    added_at: float


class ModelCatalog:
    """The user's models in ``path`` (a JSON object keyed by model name). Writes replace the
    file atomically; two concurrent ``models add`` may lose one entry, never corrupt it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, CatalogEntry]:
        """Every added model by name; an unreadable file reads as no models."""
        raw = read_json(self.path) or {}
        entries = {}
        for name, value in raw.items():
            if isinstance(value, dict):
                try:
                    entries[name] = CatalogEntry(**value)
                except TypeError:
                    continue  # an entry from another version of the format
        return entries

    def get(self, name: str) -> CatalogEntry | None:
        return self.entries().get(name)

    def add(self, name: str, family: str, file: Path, description: str = "") -> CatalogEntry:
        """Check that ``file`` is an ONNX graph with ``family``'s input and output shapes,
        hash it and record it as ``name``. Raises ``ModelError`` saying what is wrong."""
        cls = get_family(family)
        if not re.fullmatch(MODEL_NAME_PATTERN, name):
            raise ModelError(
                f"invalid model name {name!r}: 1–64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
                code="invalid_model_name",
            )
        if name in registered_models():
            raise ModelError(
                f"{name!r} is a built-in model; choose another name", code="model_exists"
            )
        path = file.expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"{path}: no such file", code="model_unavailable")
        check_graph(path, cls)
        entry = CatalogEntry(
            name=name,
            family=cls.family,
            path=str(path),
            sha256=sha256_file(path),
            size_bytes=path.stat().st_size,
            description=description or f"{cls.family} model from {path.name}",
            added_at=time.time(),
        )
        self._write({**self.entries(), name: entry})
        return entry

    def remove(self, name: str) -> CatalogEntry:
        """Forget ``name`` (its file stays where it is)."""
        entries = self.entries()
        entry = entries.pop(name, None)
        if entry is None:
            raise ModelError(f"no added model named {name!r}", code="unknown_model")
        self._write(entries)
        return entry

    def _write(self, entries: dict[str, CatalogEntry]) -> None:
        data = {name: asdict(entry) for name, entry in sorted(entries.items())}
        write_atomic(self.path, json.dumps(data, indent=1).encode())


def check_graph(path: Path, family: type[SegmentationModel]) -> None:
    """Raise ``ModelError`` unless ``path`` is an ONNX graph that takes one [N, 3, H, W]
    image of ``family``'s size and whose prediction output is [N, 1, H, W] (a dimension
    the graph leaves free matches any size)."""
    model = _load_graph(path)
    graph = model.graph
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    width, height = family.input_size
    expected_in = [None, 3, height, width]
    if len(inputs) != 1 or not _shape_matches(inputs[0], expected_in):
        shapes = ", ".join(_shape_text(v) for v in inputs) or "none"
        raise ModelError(
            f"{path}: a {family.family} model takes one input of shape "
            f"[N, 3, {height}, {width}]; this file's inputs are {shapes}",
            code="model_shape",
        )
    outputs = list(graph.output)
    try:
        output = outputs[family.output_index]
    except IndexError:
        output = None
    if output is None or not _shape_matches(output, [None, 1, height, width]):
        which = "last" if family.output_index == -1 else f"output {family.output_index}"
        shapes = ", ".join(_shape_text(v) for v in outputs) or "none"
        raise ModelError(
            f"{path}: a {family.family} model's {which} output is [N, 1, {height}, {width}]; "
            f"this file's outputs are {shapes}",
            code="model_shape",
        )


def _load_graph(path: Path) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a file that isn't ONNX
        raise ModelError(
            f"{path}: not an ONNX file ({type(exc).__name__})", code="model_corrupt"
        ) from None


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """The value's shape, a free (named or unknown) dimension as None."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def _shape_matches(value: onnx.ValueInfoProto, expected: list[int | None]) -> bool:
    dims = _dims(value)
    return len(dims) == len(expected) and all(
        want is None or have is None or have == want
        for have, want in zip(dims, expected, strict=True)
    )


def _shape_text(value: onnx.ValueInfoProto) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in _dims(value))
    return f"{value.name} [{dims}]"
