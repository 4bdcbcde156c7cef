"""onnxruntime's optimised graph of a model's runtime copy, kept beside it: a CPU session
made from it skips the graph optimisation, which was most of every process start's session
creation (ISNet's fp32 copy on 2 busy cores: 0.85-1.5 s to optimise, 0.1-0.14 s to load the
kept graph; the same masks to the bit, the same time per run).

onnxruntime warns that a graph optimised at its highest level may hold kernels laid out for
the CPU it was made on, to be used "only in the same environment". So the file is named by a
key of everything that environment is: the copy's sha256, onnxruntime's version and the CPU's
model and instruction-set flags. Another machine sharing the folder, a new CPU or an
onnxruntime upgrade makes and keeps its own. A kept graph is trusted as its runtime copy is
(its sha256 recorded with its stat, ``hashes.HashRecords``); one that fails that, or that
onnxruntime will not load, is made again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from .hashes import HashRecords, derived_matches, record_derived, sha256_file

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"


class GraphCache:
    """The optimised graph of one runtime copy (``copy``) for this machine's CPU and
    onnxruntime."""

    def __init__(self, copy: Path, hashes: HashRecords) -> None:
        self.copy = copy
        self._hashes = hashes

    @functools.cached_property
    def path(self) -> Path:
        """Where the graph for this environment is kept."""
        import onnxruntime as ort

        environment = [
            self._hashes.sha256(self.copy),
            ort.__version__,
            platform.machine(),
            cpu_identity(),
        ]
        key = hashlib.sha256(json.dumps(environment).encode()).hexdigest()[:16]
        return self.copy.with_name(f"{self.copy.stem}.ort-{key}.onnx")

    def session(self, options: ort.SessionOptions) -> ort.InferenceSession:
        """A CPU session of the copy: from the kept graph when it is sound, else optimised
        now with the graph kept for the next start (``options`` is changed for either)."""
        import onnxruntime as ort

        copy = self.copy
        if _matches(self.path, self._hashes, recheck=False):
            level = options.graph_optimization_level
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(str(self.path), options, providers=[CPU_PROVIDER])
            except Exception as exc:  # onnxruntime raises its own untyped errors
                log.warning("%s will not load (%s); optimising %s again", self.path, exc, copy)
            options.graph_optimization_level = level
        partial = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
        options.optimized_model_filepath = str(partial)
        try:
            session = ort.InferenceSession(str(copy), options, providers=[CPU_PROVIDER])
        except Exception as exc:  # it could not write the graph (a read-only folder, say)
            options.optimized_model_filepath = ""
            session = ort.InferenceSession(str(copy), options, providers=[CPU_PROVIDER])
            log.warning(
                "cannot keep the optimised model at %s (%s); each start optimises it again",
                self.path, str(exc).strip() or type(exc).__name__,
            )  # fmt: skip
        else:
            self._keep(partial)
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return session

    def _keep(self, partial: Path) -> None:
        """Move the graph onnxruntime wrote to ``partial`` into place with its hash; a
        folder that will not take it only costs the next start the optimisation."""
        try:
            digest = sha256_file(partial)
            os.replace(partial, self.path)
            record_derived(self.path, digest, {}, self._hashes)
        except OSError as exc:
            log.warning(
                "cannot keep the optimised model at %s (%s); each start optimises it again",
                self.path, exc.strerror,
            )  # fmt: skip


def unsound_graphs(copy: Path, hashes: HashRecords) -> list[Path]:
    """The graphs kept for ``copy`` (for any environment) whose bytes, read in full now, no
    longer hash as they did when kept (``bgremover models verify``; the next start on their
    machine makes them again)."""
    kept = sorted(copy.parent.glob(f"{copy.stem}.ort-*.onnx"))
    return [graph for graph in kept if not _matches(graph, hashes, recheck=True)]


def _matches(graph: Path, hashes: HashRecords, *, recheck: bool) -> bool:
    try:
        return derived_matches(graph, hashes, {}, recheck=recheck) is True
    except OSError:  # gone or unreadable since it was listed: made again
        return False


@functools.cache
def cpu_identity() -> str:
    """The CPU's model name and instruction-set flags (Linux's /proc/cpuinfo, first core),
    else what ``platform`` says of it: what a graph laid out for this CPU depends on."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor()} {platform.platform()}"
    first = text.split("\n\n", 1)[0]
    wanted = ("model name", "flags", "features", "cpu part", "cpu implementer", "isa")
    lines = [line for line in first.splitlines() if line.split(":")[0].strip().lower() in wanted]
    # Never the whole block: its "cpu MHz" changes from one read to the next.
    return "\n".join(sorted(lines)) or f"{platform.processor()} {platform.platform()}"
