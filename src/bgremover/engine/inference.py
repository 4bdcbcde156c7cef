"""The AI model stage: one onnxruntime session, cancellable mid-run, with honest progress.

A single ``session.run`` gives no progress of its own, so while it runs a ticker reports the
elapsed share of the expected duration (a decaying average of this session's previous runs),
capped below 1 until the run really returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

try:
    import onnxruntime as ort
except ImportError:  # it comes from an extra: pip cannot install both flavours
    raise ImportError(
        "onnxruntime is not installed: pip install 'bgremover[cpu]' (or 'bgremover[gpu]' "
        "for an NVIDIA GPU); scripts/setup.sh installs the CPU one"
    ) from None

from .cancel import CancelToken
from .devices import open_session
from .errors import Cancelled, EngineError
from .heap import release_free_heap

if TYPE_CHECKING:
    from .models.optimized import GraphCache

_TICK_S = 0.1
_FIRST_RUN_ESTIMATE_S = 3.0  # ISNet at 1024² on 2 busy CPU cores (bench/engine_bench.py)
_SMOOTHING = 0.3
_PROGRESS_CAP = 0.95


class InferenceSession:
    """Owns one loaded model; ``run`` may be called from several threads at once (onnxruntime
    sessions take concurrent runs; ``Remover.process_many``'s lanes do), each with its own
    cancel and progress.

    ``lean_memory`` keeps less of what loading and running the model needed: the load's
    parse buffers go back to the OS, and onnxruntime's memory pattern is off. The pattern
    plans one block for every tensor between layers, allocated beside the arena chunks of the
    first run, which stay: ISNet at 1024² peaked at 1.33 GB and kept it; lean, at 0.75 GB,
    with the same user CPU time per run (5.2 s at one thread) and the same output.
    Shrinking the arena after each run as well was no smaller at its peak and cost 0.5 s of
    page faults per run (bench/jobs_bench.py ``--only memory``, issue 11's note).

    ``device`` (``devices.DEVICES``) picks the execution provider; ``self.device`` is the one
    the session runs on. ``output_index`` is the family's prediction output. ``graph_cache``
    keeps a CPU session's optimised graph for the next process (``models.optimized``).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        intra_op_threads: int = 0,
        lean_memory: bool = True,
        device: str = "cpu",
        accelerated_model: Callable[[], bytes] | None = None,
        output_index: int = 0,
        graph_cache: GraphCache | None = None,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.enable_mem_pattern = not lean_memory
        self._session, self.device = open_session(
            model_path, options, device, accelerated_model=accelerated_model,
            graph_cache=graph_cache,
        )  # fmt: skip
        if lean_memory:
            release_free_heap()
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        batch = model_input.shape[0] if model_input.shape else 1
        self.batch_limit: int | None = batch if isinstance(batch, int) else None
        """How many images one ``run`` takes; None: as many as memory holds."""
        # The family's prediction: in the fp32 copy the only output, in a file run as it
        # is (an unwritable cache) the one ``output_index`` names among all of them.
        outputs = self._session.get_outputs()
        self._output = outputs[output_index if len(outputs) > 1 else 0].name
        self.expected_seconds = _FIRST_RUN_ESTIMATE_S
        self._measured = False

    def run(
        self,
        tensor: np.ndarray,
        *,
        cancel: CancelToken | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        """The model's prediction output; raises ``Cancelled`` within a tick of a cancel.

        ``tensor`` may hold several images ([N, 3, H, W], N up to ``batch_limit``): on a GPU
        one run of N images takes less time than N runs. ``expected_seconds`` is per image."""
        run_options = ort.RunOptions()
        stop_ticker = threading.Event()

        def terminate() -> None:
            run_options.terminate = True

        unregister = cancel.on_cancel(terminate) if cancel is not None else None
        ticker = None
        if progress is not None:
            ticker = threading.Thread(
                target=self._tick,
                args=(progress, stop_ticker, len(tensor)),
                daemon=True,
                name="ort-progress",
            )
            ticker.start()
        started = time.perf_counter()
        try:
            if cancel is not None:
                cancel.raise_if_cancelled()
            output = self._session.run([self._output], {self._input: tensor}, run_options)[0]
        except Cancelled:
            raise
        except Exception as exc:
            if cancel is not None and cancel.cancelled:
                raise Cancelled() from None
            raise EngineError(
                f"the model failed on this image ({exc})", code="inference_failed"
            ) from None
        finally:
            stop_ticker.set()
            if ticker is not None:
                ticker.join()
            if unregister is not None:
                unregister()
        elapsed = (time.perf_counter() - started) / len(tensor)  # per image, for batches
        # The first measured run replaces the guess (a worker's warm-up run, usually): on a
        # loaded machine the guess can be far off, and the ticker would sit at its cap.
        weight = _SMOOTHING if self._measured else 1.0
        self.expected_seconds += weight * (elapsed - self.expected_seconds)
        self._measured = True
        return np.asarray(output)

    def _tick(self, progress: Callable[[float], None], stop: threading.Event, images: int) -> None:
        started = time.perf_counter()
        expected = max(self.expected_seconds * images, 1e-3)
        while not stop.wait(_TICK_S):
            progress(min((time.perf_counter() - started) / expected, _PROGRESS_CAP))
