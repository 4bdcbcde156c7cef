"""The pipeline: six stages, each reporting progress and honouring a cancel token.

``Remover`` loads the model once and is reused for every image; it is what the CLI, the
Python API and each worker process hold.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import composite, mask
from .cancel import CancelToken
from .decode import ImageSource, decode, from_array, normalise, read_source
from .devices import DeviceChoice
from .encode import encode, write_atomic
from .errors import EngineError, InputError
from .inference import InferenceSession
from .models import ResolvedModel
from .models.fp32 import batched_bytes
from .options import OutputFormat, RemoveOptions
from .stages import ProgressCallback, Stage

ACCELERATOR_BATCH = 4
"""Images one model run takes on an accelerator by default (``Remover.batch_size``). A guess
that keeps a consumer GPU's memory in mind; no GPU was available to measure it
(bench/device_bench.py ``--batch-size`` does)."""

_MAX_LANES = 4
"""Images ``plan_batch`` lets run at once: each lane holds one model run's working memory and
a decoded photo (two lanes of 12 MP photos peaked at 2.0 GB, one image at a time at 1.0 GB)."""


@dataclass(frozen=True)
class BatchPlan:
    """How a batch shares the cores: ``lanes`` images at once, ``threads`` onnxruntime
    threads each (the ``Remover``'s ``intra_op_threads``)."""

    lanes: int
    threads: int


def plan_batch(images: int, cores: int = 0) -> BatchPlan:
    """One lane per core, up to ``_MAX_LANES``; a single image gets every core.

    On 2 cores two one-thread lanes ran at 0.94-0.99× the time per photo of the model's own
    two-thread floor at every size (12 MP: 1.69 s against 1.73 s), where a two-thread model
    with loading and saving on idle-priority helper threads took 1.38× at 12 MP: a lane's
    stages run back to back on its own core, so nothing waits at a thread barrier, and the
    other lane's model fills the time this one spends on the image (bench/engine_bench.py).
    ``cores`` 0: every core this process may use.
    """
    cores = cores or _available_cores()
    lanes = max(1, min(images, cores, _MAX_LANES))
    return BatchPlan(lanes=lanes, threads=max(1, cores // lanes))


def _available_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchItem:
    """One image for ``Remover.process_many``."""

    source: ImageSource
    destination: Path | None = None
    progress: ProgressCallback | None = None


@dataclass
class Removal:
    """The outcome of one image: the result, its mask and where the time went."""

    image: Image.Image
    mask: Image.Image
    format: OutputFormat
    data: bytes | None = None
    """The encoded result, when the Saving stage ran."""
    path: Path | None = None
    timings: dict[Stage, float] = field(default_factory=dict)
    model_mask: Image.Image | None = None
    """The model's own mask at full size (before post-processing and matting): what a mask
    cache keeps, since every mask option is applied to it afresh."""
    mask_reused: bool = False
    """Whether the model was skipped because ``process`` was given its mask."""

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class _Stages:
    """Runs stages in order, timing each and reporting 0 and 1 around it."""

    def __init__(self, progress: ProgressCallback | None, cancel: CancelToken | None) -> None:
        self.progress = progress
        self.cancel = cancel
        self.timings: dict[Stage, float] = {}

    def run(self, stage: Stage, work: Callable[[], Any]) -> Any:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self.report(stage, 0.0)
        started = time.perf_counter()
        result = work()
        self.timings[stage] = time.perf_counter() - started
        self.report(stage, 1.0)
        return result

    def report(self, stage: Stage, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, fraction)


class MaskMismatch(EngineError):
    """The mask given to ``process`` cannot be this image's (another size or mode): a stale
    or corrupt cache entry, so the caller runs the model instead."""

    code = "mask_mismatch"


def _settle(item: BatchItem, future: Future[Removal]) -> tuple[BatchItem, Removal | EngineError]:
    try:
        return item, future.result()
    except EngineError as exc:
        return item, exc


class Remover:
    """Removes backgrounds with one loaded model; ``process`` may run on several threads at
    once (onnxruntime sessions take concurrent runs), as ``process_many``'s lanes do."""

    def __init__(
        self,
        resolved: ResolvedModel,
        *,
        intra_op_threads: int = 0,
        lean_memory: bool = True,
        max_image_pixels: int = 100_000_000,
        max_input_bytes: int | None = None,
        device: str = "cpu",
        batch_size: int | None = None,
    ) -> None:
        self.model = resolved.model
        self.model_name = resolved.name
        self.model_sha256 = resolved.sha256
        """Which weights make this remover's masks (with ``model_name``: a mask's identity)."""
        self.model_path = resolved.path
        self.session_path = resolved.session_path
        self.max_image_pixels = max_image_pixels
        self.max_input_bytes = max_input_bytes
        self._session = InferenceSession(
            self.session_path,
            intra_op_threads=intra_op_threads,
            lean_memory=lean_memory,
            device=device,
            accelerated_model=lambda: batched_bytes(resolved.path, resolved.model.output_index),
            output_index=resolved.model.output_index,
            graph_cache=resolved.graph_cache,
        )
        self.device: DeviceChoice = self._session.device
        """The device the model runs on (``auto`` resolved, after any fallback)."""
        wanted = batch_size or (ACCELERATOR_BATCH if self.device.accelerated else 1)
        self.batch_size = min(wanted, self._session.batch_limit or wanted)
        """Images ``process_many`` runs through the model at once (``process_batch``). The
        CPU takes one at a time: its fp32 copy takes one image per run, and lanes
        (``plan_batch``) already keep its cores busy."""

    @property
    def model_identity(self) -> str:
        """What the model's mask depends on besides the image, for a mask cache's key: the
        model's name (its family's pre- and post-processing) and its file's sha256 (the same
        on every machine of a cluster), and what onnxruntime runs (the fp32 copy on the CPU,
        the fp16 weights on an accelerator: their masks differ in the last bits, so a mixed
        cluster keeps one of each)."""
        runs = "fp16" if self.device.accelerated else self.session_path.name
        return f"{self.model_name}:{self.model_sha256}:{runs}"

    def process(
        self,
        source: ImageSource,
        options: RemoveOptions | None = None,
        *,
        destination: Path | None = None,
        encode_result: bool = True,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        mask: Image.Image | None = None,
    ) -> Removal:
        """Run every stage on one image; write ``destination`` atomically when given.

        ``mask``: this model's ``model_mask`` of the same image from an earlier run; the
        Preprocessing and AI model stages are then skipped (the AI model stage is reported
        done at once) and the mask options applied to it. MaskMismatch when it cannot be
        this image's."""
        stages = _Stages(progress, cancel)
        model_mask: Callable[[], Image.Image]
        if mask is None:
            image, tensor = self._before_model(source, stages)
            model_mask = partial(self._model_mask, image, self._model(tensor, stages))
        else:
            image = stages.run(Stage.LOADING, lambda: self._load(source))
            if mask.mode != "L" or mask.size != image.size:
                raise MaskMismatch(
                    f"a {mask.mode} {mask.size} mask cannot be a {image.size} image's"
                )
            stages.report(Stage.INFERENCE, 1.0)
            model_mask = mask.copy  # the caller's image stays as it was
        removal = self._after_model(
            image, model_mask, options or RemoveOptions(), destination, encode_result, stages
        )
        removal.mask_reused = mask is not None
        return removal

    def process_many(
        self,
        items: Iterable[BatchItem],
        options: RemoveOptions | None = None,
        *,
        cancel: CancelToken | None = None,
        lanes: int = 1,
    ) -> Generator[tuple[BatchItem, Removal | EngineError], None, None]:
        """``process`` for each item, ``lanes`` images at once, results in order.

        Items are pulled as lanes come free (a lazy iterable sees each pull when its image
        starts), none after a cancel; ``plan_batch`` picks ``lanes`` and this ``Remover``'s
        threads together.
        Finished results wait for an earlier, slower image; at most ``2 × lanes`` images are
        held. An image's ``EngineError`` (``Cancelled`` included) is its result and the others
        go on. Stopping the iteration (Ctrl-C, ``close``) cancels what is still running.
        With a ``batch_size`` above 1 (an accelerator) images go through ``process_batch``,
        ``batch_size`` at a time, and ``lanes`` is not used.
        """
        options = options or RemoveOptions()
        if self.batch_size > 1:
            yield from self._batches(items, options, cancel)
            return
        stop = CancelToken()
        unlink = cancel.on_cancel(stop.cancel) if cancel is not None else None
        pool = ThreadPoolExecutor(lanes, "bgremover-lane")
        pending: deque[tuple[BatchItem, Future[Removal]]] = deque()
        source = iter(items)

        def fill() -> None:
            """Start items while a lane is free and fewer than ``2 × lanes`` are held."""
            while not stop.cancelled and len(pending) < 2 * lanes:
                if sum(not future.done() for _, future in pending) >= lanes:
                    return
                item = next(source, None)
                if item is None:
                    return
                future = pool.submit(
                    self.process,
                    item.source,
                    options,
                    destination=item.destination,
                    progress=item.progress,
                    cancel=stop,
                )
                pending.append((item, future))

        try:
            fill()
            while pending:
                if pending[0][1].done():
                    yield _settle(*pending.popleft())
                else:
                    running = [future for _, future in pending if not future.done()]
                    wait(running, return_when=FIRST_COMPLETED)
                fill()
        finally:
            stop.cancel()  # no-op after a full run; otherwise stops the images still in flight
            pool.shutdown(wait=True, cancel_futures=True)
            if unlink is not None:
                unlink()

    def process_batch(
        self,
        items: Sequence[BatchItem],
        options: RemoveOptions | None = None,
        *,
        cancel: CancelToken | None = None,
    ) -> list[Removal | EngineError]:
        """``process`` for each item with one model run for them all: the images go through
        the model as one [N, 3, H, W] tensor, split back after. An image that fails before
        or after the model is its own result and the others go on; a cancel or a failed run
        is the result of every image in it. Results are in the items' order."""
        options = options or RemoveOptions()
        results: list[Removal | EngineError | None] = [None] * len(items)
        ready: list[tuple[int, _Stages, Image.Image, np.ndarray]] = []
        for index, item in enumerate(items):
            stages = _Stages(item.progress, cancel)
            try:
                ready.append((index, stages, *self._before_model(item.source, stages)))
            except EngineError as exc:
                results[index] = exc
        try:
            predictions = self._model_batch(ready, cancel)
        except EngineError as exc:
            predictions, ready = np.empty(0), []
            results = [exc if result is None else result for result in results]
        for position, (index, stages, image, _) in enumerate(ready):
            prediction = predictions[position : position + 1]
            try:
                results[index] = self._after_model(
                    image, partial(self._model_mask, image, prediction), options,
                    items[index].destination, True, stages,
                )  # fmt: skip
            except EngineError as exc:
                results[index] = exc
        return [result for result in results if result is not None]

    def _batches(
        self, items: Iterable[BatchItem], options: RemoveOptions, cancel: CancelToken | None
    ) -> Generator[tuple[BatchItem, Removal | EngineError], None, None]:
        source = iter(items)
        while not (cancel is not None and cancel.cancelled):
            chunk = list(islice(source, self.batch_size))
            if not chunk:
                return
            yield from zip(chunk, self.process_batch(chunk, options, cancel=cancel), strict=True)

    def _model_batch(
        self,
        ready: list[tuple[int, _Stages, Image.Image, np.ndarray]],
        cancel: CancelToken | None,
    ) -> np.ndarray:
        """One model run for the tensors of ``ready``; each image's AI model stage spans it
        and is timed as its share of it."""
        if not ready:
            return np.empty(0)
        every = [stages for _, stages, _, _ in ready]
        for stages in every:
            stages.report(Stage.INFERENCE, 0.0)

        def progress(fraction: float) -> None:
            for stages in every:
                stages.report(Stage.INFERENCE, fraction)

        started = time.perf_counter()
        predictions = self._session.run(
            np.concatenate([tensor for *_, tensor in ready]),
            cancel=cancel,
            progress=progress if any(stages.progress for stages in every) else None,
        )
        share = (time.perf_counter() - started) / len(ready)
        for stages in every:
            stages.timings[Stage.INFERENCE] = share
            stages.report(Stage.INFERENCE, 1.0)
        return predictions

    def remove(self, source: ImageSource, options: RemoveOptions | None = None) -> Image.Image:
        """The result image (cut-out, mask or composite) without encoding it."""
        return self.process(source, options, encode_result=False).image

    def _load(self, source: ImageSource) -> Image.Image:
        if isinstance(source, Image.Image):
            return normalise(source)
        if isinstance(source, np.ndarray):
            return from_array(source)
        data, name = read_source(source, max_bytes=self.max_input_bytes)
        return decode(data, name=name, max_pixels=self.max_image_pixels)

    def _before_model(self, source: ImageSource, stages: _Stages) -> tuple[Image.Image, np.ndarray]:
        image: Image.Image = stages.run(Stage.LOADING, lambda: self._load(source))
        tensor = stages.run(Stage.PREPROCESSING, lambda: self.model.preprocess(image))
        return image, tensor

    def _model(self, tensor: np.ndarray, stages: _Stages) -> np.ndarray:
        progress = stages.progress
        prediction: np.ndarray = stages.run(
            Stage.INFERENCE,
            lambda: self._session.run(
                tensor,
                cancel=stages.cancel,
                progress=(lambda f: stages.report(Stage.INFERENCE, f)) if progress else None,
            ),
        )
        return prediction

    def _after_model(
        self,
        image: Image.Image,
        model_mask: Callable[[], Image.Image],
        options: RemoveOptions,
        destination: Path | None,
        encode_result: bool,
        stages: _Stages,
    ) -> Removal:
        """The Mask stage (``model_mask`` makes the model's mask, then the mask options
        refine it), Compositing and Saving."""

        def mask_stage() -> tuple[Image.Image, Image.Image, Image.Image | None]:
            base = model_mask()
            return (base, *self._mask(image, base, options))

        base: Image.Image
        alpha: Image.Image
        colours: Image.Image | None
        base, alpha, colours = stages.run(Stage.MASK, mask_stage)
        result: Image.Image = stages.run(
            Stage.COMPOSITING, lambda: self._composite(image, alpha, colours, options)
        )
        removal = Removal(image=result, mask=alpha, format=options.format, model_mask=base)
        if destination is not None or encode_result:
            removal.data = stages.run(
                Stage.SAVING, lambda: self._save(result, options, destination)
            )
            removal.path = destination
        removal.timings = stages.timings
        return removal

    def _model_mask(self, image: Image.Image, prediction: np.ndarray) -> Image.Image:
        """The model's mask at the image's size, before any mask option."""
        return mask.to_size(mask.stretch(self.model.postprocess(prediction)), image.size)

    def _mask(
        self, image: Image.Image, alpha: Image.Image, options: RemoveOptions
    ) -> tuple[Image.Image, Image.Image | None]:
        if options.post_process_mask:
            alpha = mask.post_process(alpha)
        if options.alpha_matting:
            return mask.alpha_matting(
                image,
                alpha,
                foreground_threshold=options.alpha_matting_foreground_threshold,
                background_threshold=options.alpha_matting_background_threshold,
                erode_size=options.alpha_matting_erode_size,
            )
        return alpha, None

    def _composite(
        self,
        image: Image.Image,
        alpha: Image.Image,
        colours: Image.Image | None,
        options: RemoveOptions,
    ) -> Image.Image:
        if options.format is OutputFormat.MASK:
            return alpha
        if colours is None and options.refine_foreground:
            # Compositing, not Mask: the alpha stays the model's, whatever the colours.
            # Imported here: numba, which it compiles with, costs every start 0.2-0.4 s.
            from . import foreground

            colours = foreground.estimate(image, alpha)
        cut = composite.adjust(
            composite.cutout(image, alpha, colours), options.brightness, options.contrast
        )
        if options.background_image is not None:
            return composite.on_image(
                cut, self._background(options.background_image, cut.size), options.background_blur
            )
        color = options.background_color
        if color is None and options.format is OutputFormat.JPEG:
            color = (255, 255, 255, 255)  # JPEG has no alpha: white unless told otherwise
        return composite.on_color(cut, color) if color is not None else cut

    def _background(self, path: Path, size: tuple[int, int]) -> Image.Image:
        """The background image, decoded under the same pixel limit as photos and no larger
        than covering ``size`` needs (a JPEG decodes at a reduced scale)."""
        name = f"background image {path.name}"
        try:
            data, _ = read_source(path, max_bytes=self.max_input_bytes)
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), name), code=exc.code) from None
        return decode(data, name=name, max_pixels=self.max_image_pixels, draft=max(size))

    def _save(self, result: Image.Image, options: RemoveOptions, destination: Path | None) -> bytes:
        data = encode(result, options.format, quality=options.quality)
        if destination is not None:
            write_atomic(destination, data)
        return data
