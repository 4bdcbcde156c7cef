"""The pipeline's stages, their user-facing names and their share of a job's work.

The weights are measured, not guessed: ``python bench/engine_bench.py`` prints each stage's
mean share of the wall time over the benchmark photos (1–12 MP, 2 cores, fp16 ISNet). The job
system refines these per machine with its own measured durations; these are the defaults
before the first job finishes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class Stage(StrEnum):
    """A pipeline stage; the value is the name shown to users."""

    LOADING = "Loading"
    PREPROCESSING = "Preprocessing"
    INFERENCE = "AI model"
    MASK = "Mask"
    COMPOSITING = "Compositing"
    SAVING = "Saving"


STAGES: tuple[Stage, ...] = tuple(Stage)

REUSED_LABEL = f"{Stage.INFERENCE.value}: reused"
"""What the AI model stage is called when a kept mask was reused instead of running it."""
SKIPPED_ON_REUSE: frozenset[Stage] = frozenset({Stage.PREPROCESSING, Stage.INFERENCE})
"""The stages a run with a kept mask skips: they take no time in its estimate."""


def parse_label(label: str) -> tuple[Stage, bool]:
    """The stage a reported label names, and whether it says the mask was reused;
    ValueError for anything else."""
    if label == REUSED_LABEL:
        return Stage.INFERENCE, True
    return Stage(label), False


def stage_label(stage: Stage, mask_reused: bool) -> str:
    """The name people see for ``stage`` of a run that did (not) reuse a kept mask."""
    return REUSED_LABEL if mask_reused and stage is Stage.INFERENCE else stage.value


# Share of a job's wall time per stage: the mean over the 8 benchmark photos (0.14-12 MP) of
# bench/engine_bench.py on 2 cores. Small photos are ~95 % AI model; at 12 MP Saving takes ~36 %.
STAGE_WEIGHTS: dict[Stage, float] = {
    Stage.LOADING: 0.016,
    Stage.PREPROCESSING: 0.030,
    Stage.INFERENCE: 0.791,
    Stage.MASK: 0.013,
    Stage.COMPOSITING: 0.006,
    Stage.SAVING: 0.144,
}

ProgressCallback = Callable[[Stage, float], None]
"""Called with the current stage and the fraction (0–1) of that stage that is done."""


def overall_percent(
    stage: Stage, fraction: float, weights: dict[Stage, float] = STAGE_WEIGHTS
) -> float:
    """Percent (0–100) of the whole job when ``fraction`` of ``stage`` is done."""
    total = sum(weights.values())
    done = 0.0
    for s in STAGES:
        if s is stage:
            done += weights[s] * min(max(fraction, 0.0), 1.0)
            break
        done += weights[s]
    return 100.0 * done / total
