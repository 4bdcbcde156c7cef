"""Expected stage durations, learned from finished jobs, for honest ETAs.

Durations are kept per stage and per image-size bucket as exponentially decaying averages, so
the estimate follows this machine and its current concurrency; the database keeps them across
restarts and shares them between processes (``timings``). Before any job of a size has
finished, each worker's warm-up run at start calibrates them for this machine; before that,
the defaults come from the engine's measured stage weights and a measured per-image time.
Queue waiting is never part of a duration: only the worker's own stage timings are observed.
A run that reused a kept mask reports no Preprocessing or AI model time, so it teaches only
the stages it ran, and a job expected to reuse one (``mask_reused``) is priced without them.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Iterable

from ...engine.stages import SKIPPED_ON_REUSE, STAGE_WEIGHTS, STAGES, Stage

# Bucket edges in megapixels: <1, 1-4, 4-16, >=16.
BUCKET_EDGES_MP: tuple[float, ...] = (1.0, 4.0, 16.0)
# Seconds per image before the first job finishes, per bucket: ISNet's fp32 copy with two
# jobs sharing two cores. A small photo takes about 1.5 s on a quiet 2-vCPU machine (the
# model alone 1.40 s on a pool worker's one core, bench/startup_bench.py) and 3 s on a busy
# one; 2.5 s errs toward the busy side by less than 2x either way. Larger images add their
# decode, resize and encode time in the proportions measured for fp16 ISNet (4, 5, 7, 12 s).
FIRST_RUN_SECONDS: tuple[float, ...] = (2.5, 3.0, 4.5, 7.5)
WARM_UP_SECONDS = 6.0
"""How long the workers take to start (process, model load, their timed warm-up image) at the
speed ``FIRST_RUN_SECONDS`` assume: warm-up seconds over how much slower the machine then
proved, 5.3 and 7.8 s in two runs of bench/eta_bench.py. A batch queued before this machine's
speed is known waits that long first, and longer in proportion where the warm-up overruns it
(``snapshots.warming_eta``)."""
SMOOTHING = 0.3
REPRESENTATIVE_MP: tuple[float, ...] = (0.5, 2.0, 8.0, 24.0)
"""A typical image of each bucket: learned times are kept for it, and a job's pixel-bound
stages are scaled from it by the job's own pixel count."""
MIN_SIZE_FACTOR = 0.05


def size_bucket(width: int | None, height: int | None) -> int:
    if not width or not height:
        return 0
    return bisect_right(BUCKET_EDGES_MP, width * height / 1e6)


class StageClock:
    """Thread-safe expected seconds per (bucket, stage), and the model stage's seconds per
    model a job chose (``model`` arguments; None: the server's default model, whose model
    stage is the bucket's). Models differ mostly there: U²-Net at 320² takes a fraction of
    BiRefNet's time at 1024², while decoding and saving an image do not depend on it."""

    def __init__(self, smoothing: float = SMOOTHING) -> None:
        self._smoothing = smoothing
        self._lock = threading.Lock()
        total = sum(STAGE_WEIGHTS.values())
        self._seconds: dict[tuple[int, Stage], float] = {
            (bucket, stage): seconds * STAGE_WEIGHTS[stage] / total
            for bucket, seconds in enumerate(FIRST_RUN_SECONDS)
            for stage in STAGES
        }
        self._model_inference: dict[str, float] = {}
        self.observations = 0
        self._measured: set[int] = set()
        self._calibrated = False

    def observe(
        self,
        bucket: int,
        timings: dict[str, float],
        pixels: int | None = None,
        model: str | None = None,
    ) -> dict[str, float]:
        """Fold one finished job's stage timings into the averages (scaled to the bucket's
        typical size when the job's ``pixels`` are given); returns what was folded in. The
        first measurement of a bucket replaces the defaults outright: on a busy machine they
        can be 5x off, and averaging them in would keep the first estimates wrong for
        several jobs. The model stage of a job that chose ``model`` is that model's alone.

        The first full run of the default model on a machine no warm-up has timed (the
        first job cancels the warm-up) also seeds the sizes nothing has measured yet, as a
        warm-up would (``calibrate``): a batch's 12 MP photos are then not priced at the
        defaults while its small ones show the machine is twice as fast."""
        normalized = {}
        with self._lock:
            seed = (
                not self._calibrated
                and model is None
                and pixels is not None
                and Stage.INFERENCE.value in timings
            )
            first = bucket not in self._measured
            for name, seconds in timings.items():
                try:
                    stage = Stage(name)
                except ValueError:
                    continue
                key = (bucket, stage)
                normalized[name] = seconds / _size_factor(bucket, stage, pixels)
                if model is not None and stage is Stage.INFERENCE:
                    known = self._model_inference.get(model)
                    self._model_inference[model] = (
                        seconds if known is None else known + self._smoothing * (seconds - known)
                    )
                    continue
                weight = 1.0 if first else self._smoothing
                self._seconds[key] += weight * (normalized[name] - self._seconds[key])
            self._measured.add(bucket)
            self.observations += 1
        if seed:
            assert pixels is not None
            self.calibrate(pixels, timings)
        return normalized

    def calibrate(self, pixels: int, timings: dict[str, float]) -> None:
        """Seed the buckets no finished job has measured from a warm-up run of ``pixels``:
        the model's time is the same for every size (its input is 1024×1024), the other
        stages scale with the pixels."""
        with self._lock:
            self._calibrated = True
            for bucket, megapixels in enumerate(REPRESENTATIVE_MP):
                if bucket in self._measured:
                    continue
                scale = megapixels * 1e6 / max(1, pixels)
                for name, seconds in timings.items():
                    try:
                        stage = Stage(name)
                    except ValueError:
                        continue
                    value = seconds if stage is Stage.INFERENCE else seconds * scale
                    self._seconds[(bucket, stage)] = value

    def load(self, rows: Iterable[tuple[int, str, float, int]]) -> None:
        """Adopt learned timings (bucket, stage, seconds, samples) kept in the database."""
        with self._lock:
            for bucket, name, seconds, samples in rows:
                try:
                    key = (bucket, Stage(name))
                except ValueError:
                    continue
                if samples > 0 and key in self._seconds:
                    self._seconds[key] = seconds
                    self._measured.add(bucket)

    def load_models(self, rows: Iterable[tuple[str, float, int]]) -> None:
        """Adopt learned model-stage seconds (model, seconds, samples) kept in the database."""
        with self._lock:
            for model, seconds, samples in rows:
                if samples > 0:
                    self._model_inference[model] = seconds

    @property
    def measured(self) -> bool:
        """Whether anything timed on this machine is known (a finished job, learned timings,
        a warm-up): before that, every estimate is the defaults'."""
        with self._lock:
            return self._calibrated or bool(self._measured)

    def expected(
        self, bucket: int, stage: Stage, pixels: int | None = None, model: str | None = None
    ) -> float:
        with self._lock:
            return self._typical(bucket, stage, model) * _size_factor(bucket, stage, pixels)

    def job_seconds(
        self,
        bucket: int,
        pixels: int | None = None,
        model: str | None = None,
        *,
        mask_reused: bool = False,
    ) -> float:
        """Expected processing time of a whole job in this bucket (of ``pixels``, when
        known: the pixel-bound stages scale from the bucket's typical size) on ``model``."""
        return sum(self.weights(bucket, pixels, model, mask_reused=mask_reused).values())

    def weights(
        self,
        bucket: int,
        pixels: int | None = None,
        model: str | None = None,
        *,
        mask_reused: bool = False,
    ) -> dict[Stage, float]:
        """Expected seconds per stage: their shares make percent complete, as measured.
        With ``mask_reused`` the stages a kept mask skips take none."""
        with self._lock:
            return {
                stage: 0.0
                if mask_reused and stage in SKIPPED_ON_REUSE
                else self._typical(bucket, stage, model) * _size_factor(bucket, stage, pixels)
                for stage in STAGES
            }

    def _typical(self, bucket: int, stage: Stage, model: str | None) -> float:
        """Seconds of ``stage`` for the bucket's typical image: the chosen model's own for
        the model stage once one of its jobs has finished, else the bucket's (held lock)."""
        if model is not None and stage is Stage.INFERENCE:
            learned = self._model_inference.get(model)
            if learned is not None:
                return learned
        return self._seconds[(bucket, stage)]

    def remaining(
        self,
        bucket: int,
        stage: Stage,
        fraction: float,
        pixels: int | None = None,
        model: str | None = None,
        *,
        mask_reused: bool = False,
    ) -> float:
        """Seconds left for a job that has done ``fraction`` of ``stage``."""
        seconds = self.weights(bucket, pixels, model, mask_reused=mask_reused)
        index = STAGES.index(stage)
        left = (1.0 - min(max(fraction, 0.0), 1.0)) * seconds[stage]
        return left + sum(seconds[s] for s in STAGES[index + 1 :])


def _size_factor(bucket: int, stage: Stage, pixels: int | None) -> float:
    """How much longer than for the bucket's typical image a stage takes for ``pixels``: the
    model's input is always 1024×1024; decoding, resizing, compositing and saving scale."""
    if pixels is None or stage is Stage.INFERENCE:
        return 1.0
    return max(MIN_SIZE_FACTOR, pixels / (REPRESENTATIVE_MP[bucket] * 1e6))
