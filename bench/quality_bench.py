"""Cut-out quality on composites whose truth is known (issue 24): masks, alpha and edge colour.

For each sample photo (``samples/*.jpg``, native size) the subject's truth is made once: its
alpha is ISNet's mask of the photo and its colours are pymatting's multilevel foreground
estimate at full size, so they carry none of the photo's own background. The subject is
placed on saturated green, red and blue walls; each model available here (ISNet always)
removes the wall, with and without ``refine_foreground``, and the result is measured:

- IoU of the mask (alpha >= 0.5) against the true alpha, and mean |alpha error| (0–1),
- edge colour error: the cut-out on white and on black against the true subject on the same
  backdrop, mean |difference| per channel (0–255), in the edge band (true alpha in
  0.05–0.95) where the product's alpha is within 0.05 of the true one (elsewhere the error is
  the mask's, not the colour's); averaged over walls and backdrops,
- seconds per image (the whole ``Remover.process``, decode to encoded PNG) and the
  Compositing stage's (where refining runs),
- for reference (row ``ml-full``), pymatting's multilevel estimator at full size on the
  unrefined run's alpha: the estimator the product's faster one must measure like,
- with ``--cost``, what refining adds to a 12 MP job (the issue's bar: at most 15 %).

The baseline is the unrefined output (what the product gave before issue 24) of the same run;
the table prints the refined/baseline ratio of the colour error. Not a test; run by hand:

    .venv/bin/python bench/quality_bench.py --cost   # and what refining adds to 12 MP jobs
    .venv/bin/python bench/quality_bench.py --photos chelsea.jpg --models isnet-general-use
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WALLS = {"green": (0, 200, 0), "red": (220, 0, 0), "blue": (0, 0, 230)}
BACKDROPS = {"white": (255, 255, 255), "black": (0, 0, 0)}
EDGE_BAND = (0.05, 0.95)
ALPHA_TOLERANCE = 0.05


@dataclass(frozen=True)
class Subject:
    """A subject whose truth is known: alpha (HxW, 0–1) and colours (HxWx3, 0–1)."""

    alpha: np.ndarray
    colours: np.ndarray

    def on(self, color: tuple[int, int, int]) -> np.ndarray:
        """The subject over a solid colour, HxWx3 0–1."""
        a = self.alpha[..., np.newaxis]
        return a * self.colours + (1 - a) * (np.asarray(color) / 255)

    def on_wall(self, color: tuple[int, int, int]) -> Image.Image:
        return Image.fromarray(np.round(self.on(color) * 255).astype(np.uint8), "RGB")


def subject_from(photo: Image.Image, alpha: Image.Image) -> Subject:
    """The subject of ``photo`` under ``alpha``, its colours free of the photo's background."""
    from pymatting import estimate_foreground_ml

    a = np.asarray(alpha, dtype=np.float64) / 255
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float64) / 255
    return Subject(a, np.clip(estimate_foreground_ml(rgb, a), 0, 1))


def edge_colour_error(cut: Image.Image, truth: Subject) -> float:
    """Mean |colour difference| (0–255) of the RGBA ``cut`` against ``truth`` on each backdrop,
    in the edge band where the cut's alpha is within ``ALPHA_TOLERANCE`` of the truth's."""
    pixels = np.asarray(cut.convert("RGBA"), dtype=np.float64) / 255
    a = pixels[..., 3]
    band = (
        (truth.alpha > EDGE_BAND[0])
        & (truth.alpha < EDGE_BAND[1])
        & (np.abs(a - truth.alpha) <= ALPHA_TOLERANCE)
    )
    if not band.any():
        raise ValueError("no pixel in the edge band")
    errors = []
    for color in BACKDROPS.values():
        backdrop = np.asarray(color) / 255
        seen = a[..., np.newaxis] * pixels[..., :3] + (1 - a[..., np.newaxis]) * backdrop
        errors.append(float(np.abs(seen - truth.on(color))[band].mean() * 255))
    return statistics.fmean(errors)


def mask_scores(cut: Image.Image, truth: Subject) -> tuple[float, float]:
    """IoU at alpha 0.5 and mean |alpha error| of the cut against the truth."""
    a = np.asarray(cut.getchannel("A"), dtype=np.float64) / 255
    ours, theirs = a >= 0.5, truth.alpha >= 0.5
    union = (ours | theirs).sum()
    iou = float((ours & theirs).sum() / union) if union else 1.0
    return iou, float(np.abs(a - truth.alpha).mean())


def _available_models(wanted: list[str] | None) -> list[str]:
    """The configured model (ISNet unless told; fetched if missing) and every other
    registered model whose weights are already on this machine."""
    from bgremover import Settings
    from bgremover.engine.models import ModelStore
    from bgremover.engine.models.base import registered_models

    if wanted:
        return wanted
    settings = Settings()
    store = ModelStore(settings.models_dir)
    return [settings.model] + [
        name
        for name, model in registered_models().items()
        if name != settings.model and model.file_name and store.is_valid(model)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", nargs="*", help="names in samples/ (default: all)")
    parser.add_argument("--models", nargs="*", help="model names (default: those on disk)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads")
    parser.add_argument("--cost", action="store_true", help="also time a 12 MP job, off/on")
    parser.add_argument("--rounds", type=int, default=5, help="12 MP jobs each way (--cost)")
    args = parser.parse_args()

    import bgremover

    photos = sorted((REPO / "samples").glob("*.jpg"))
    if args.photos:
        photos = [p for p in photos if p.name in args.photos]
    print(f"{len(photos)} photos × {len(WALLS)} walls × {len(BACKDROPS)} backdrops")
    print(
        f"{'model':<28}{'refine':>7}{'IoU min':>9}{'mean':>7}{'|Δα|':>8}{'edge err':>10}"
        f"{'ratio':>7}{'s/img':>8}{'compose':>9}"
    )
    for model in _available_models(args.models):
        remover = bgremover.load_remover(
            bgremover.Settings(model=model, intra_op_threads=args.threads)
        )
        rows = _measure(remover, photos)
        baseline = statistics.fmean(row[2] for row in rows["off"])
        for variant, row_list in rows.items():
            ious, maes, colour, seconds, compose = (
                list(column) for column in zip(*row_list, strict=True)
            )
            error = statistics.fmean(colour)
            print(
                f"{model:<28}{variant:>7}{min(ious):>9.4f}"
                f"{statistics.fmean(ious):>7.4f}{statistics.fmean(maes):>8.4f}{error:>10.2f}"
                f"{error / baseline:>7.2f}{statistics.median(seconds):>8.2f}"
                f"{statistics.median(compose):>9.3f}"
            )
        for index, path in enumerate(photos):
            per_wall = slice(index * len(WALLS), (index + 1) * len(WALLS))
            off, on = (statistics.fmean(r[2] for r in rows[v][per_wall]) for v in ("off", "on"))
            print(f"  {path.name}: edge error {off:.2f} off, {on:.2f} on ({on / off:.2f}×)")
        if args.cost:
            _cost(remover, args.rounds)
    print(
        "IoU min: the worst image; |Δα| and edge error (0-255): means; ratio: edge error "
        "against refine off; s/img and compose (the Compositing stage): medians; ml-full: "
        "pymatting's multilevel estimator at full size on the product's alpha, for reference"
    )


Row = tuple[float, float, float, float, float]


def _measure(remover: Any, photos: list[Path]) -> dict[str, list[Row]]:
    """Each photo on each wall, refined and not, back to back (so both see the same load
    from other processes), after one untimed run of each (numba loads its compiled code);
    and, as the reference a faster estimator must match, pymatting's multilevel estimator
    at full size on the unrefined run's alpha."""
    from pymatting import estimate_foreground_ml

    from bgremover.engine import RemoveOptions, Stage, composite

    rows: dict[str, list[Row]] = {"off": [], "on": [], "ml-full": []}
    for path in photos:
        photo = Image.open(path).convert("RGB")
        truth = subject_from(photo, remover.remove(photo, RemoveOptions(format="mask")))
        for wall in WALLS.values():
            buffer = io.BytesIO()
            truth.on_wall(wall).save(buffer, "PNG")
            if not rows["off"]:
                for refine in (False, True):
                    remover.process(buffer.getvalue(), RemoveOptions(refine_foreground=refine))
            for variant in ("off", "on"):
                started = time.perf_counter()
                removal = remover.process(
                    buffer.getvalue(), RemoveOptions(refine_foreground=variant == "on")
                )
                seconds = time.perf_counter() - started
                cut = Image.open(io.BytesIO(removal.data or b""))
                iou, mae = mask_scores(cut, truth)
                compose = removal.timings[Stage.COMPOSITING]
                rows[variant].append((iou, mae, edge_colour_error(cut, truth), seconds, compose))
                if variant == "off":
                    started = time.perf_counter()
                    on_wall = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
                    seen = np.asarray(on_wall, dtype=np.float64) / 255
                    alpha = np.asarray(removal.mask, dtype=np.float64) / 255
                    colours = np.clip(estimate_foreground_ml(seen, alpha), 0, 1)
                    reference = composite.cutout(
                        on_wall,
                        removal.mask,
                        Image.fromarray(np.round(colours * 255).astype(np.uint8), "RGB"),
                    )
                    spent = time.perf_counter() - started
                    score = edge_colour_error(reference, truth)
                    rows["ml-full"].append((iou, mae, score, seconds + spent, compose + spent))
    return rows


def _cost(remover: Any, rounds: int) -> None:
    """What refining adds to a 12 MP job (chelsea upscaled to 4000×3000 as in
    engine_bench.py, JPEG in, PNG out), off and on alternately, medians: the whole job and
    its Compositing stage (where refining runs; the stage is less noisy on a busy machine)."""
    from PIL import ImageOps

    from bgremover.engine import RemoveOptions, Stage

    photo = ImageOps.fit(
        Image.open(REPO / "samples" / "chelsea.jpg"), (4000, 3000), Image.Resampling.LANCZOS
    )
    buffer = io.BytesIO()
    photo.convert("RGB").save(buffer, "JPEG", quality=92)
    jobs: dict[bool, list[float]] = {False: [], True: []}
    stages: dict[bool, list[float]] = {False: [], True: []}
    for run in range(rounds + 1):
        for refine in (False, True):
            started = time.perf_counter()
            removal = remover.process(buffer.getvalue(), RemoveOptions(refine_foreground=refine))
            if run:  # the first round warms up
                jobs[refine].append(time.perf_counter() - started)
                stages[refine].append(removal.timings[Stage.COMPOSITING])
    off, on = statistics.median(jobs[False]), statistics.median(jobs[True])
    added = statistics.median(stages[True]) - statistics.median(stages[False])
    print(
        f"  12 MP job: {off:.2f} s off, {on:.2f} s on ({on / off - 1:+.1%}); Compositing "
        f"+{added:.3f} s = {added / off:.1%} of the job off"
    )


if __name__ == "__main__":
    main()
