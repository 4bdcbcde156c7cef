"""The models one worker process has loaded, for jobs that each choose their model.

Shared by the local worker processes and the Celery workers. Loading takes seconds, so a
worker keeps what it loaded, up to ``Settings.model_memory`` bytes of weights, letting the
least recently used go first. A model that cannot load here (its file missing on this
machine, a corrupt download) fails the job that asked for it with the reason and the fix;
the worker goes on serving the others.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from ..config import Settings
from ..engine import ModelError, Remover
from ..engine.models import ModelStore

log = logging.getLogger(__name__)


def load_remover(settings: Settings | None = None) -> Remover:
    """A ``Remover`` for the configured model, fetching the model first if it is missing."""
    settings = settings or Settings()
    store = ModelStore(settings.models_dir)
    return Remover(
        store.resolve(settings.model, settings.model_path),
        intra_op_threads=settings.intra_op_threads,
        lean_memory=settings.lean_model_memory,
        max_image_pixels=settings.max_image_pixels,
        max_input_bytes=settings.max_upload_bytes,
        device=settings.device,
        batch_size=settings.batch_size,
    )


class Removers:
    """Loaded models by name, least recently used first; ``get`` is safe from any thread."""

    def __init__(
        self,
        settings: Settings,
        *,
        load: Callable[[Settings], Remover] | None = None,
        first: Remover | ModelError | None = None,
    ) -> None:
        """``first``: the default model as the worker already loaded it (or the reason it
        could not), kept so that jobs naming no model fail or run as before."""
        self._settings = settings
        self._load = load or load_remover
        self._budget = settings.model_memory
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Remover] = OrderedDict()
        self._default_failure: ModelError | None = None
        if isinstance(first, Remover):
            self._loaded[settings.model] = first
        elif isinstance(first, ModelError):
            self._default_failure = first

    @property
    def keep_masks(self) -> bool:
        """Whether runs keep their model masks in the store (``mask_cache_bytes`` > 0): with
        no room for them, a mask would be written only to be evicted at once."""
        return self._settings.mask_cache_bytes > 0

    def get(self, name: str | None) -> Remover:
        """The loaded model ``name`` (None: the default), loading it now if needed; raises
        ``ModelError`` when it cannot be loaded on this machine."""
        name = name or self._settings.model
        with self._lock:
            remover = self._loaded.get(name)
            if remover is not None:
                self._loaded.move_to_end(name)
                return remover
            if name == self._settings.model and self._default_failure is not None:
                raise self._default_failure
            # The default keeps BGREMOVER_MODEL_PATH; a model chosen by name is that model.
            update: dict[str, object] = {"model": name}
            if name != self._settings.model:
                update["model_path"] = None
            remover = self._load(self._settings.model_copy(update=update))
            self._loaded[name] = remover
            self._evict(keep=name)
            return remover

    @property
    def settings(self) -> Settings:
        """The worker's settings (its limits, for a clip's run)."""
        return self._settings

    def loaded(self) -> list[str]:
        """Names of the loaded models, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _evict(self, keep: str) -> None:
        while len(self._loaded) > 1 and self._weights() > self._budget:
            oldest = next(name for name in self._loaded if name != keep)
            del self._loaded[oldest]
            log.info("let model %s go: BGREMOVER_MODEL_MEMORY is %d bytes", oldest, self._budget)

    def _weights(self) -> int:
        return sum(weights_bytes(remover) for remover in self._loaded.values())


def weights_bytes(remover: Remover) -> int:
    """What a loaded model's weights take: the size of the file onnxruntime loaded."""
    try:
        return remover.session_path.stat().st_size
    except OSError:
        return 0
