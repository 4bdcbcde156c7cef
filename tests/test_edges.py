"""Clean edges on any background: the subject's own colours under its soft edges (issue 24)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench.quality_bench import Subject, edge_colour_error
from PIL import Image

from bgremover import RemoveOptions, Settings, load_remover
from bgremover.engine import composite, foreground

GREEN_WALL = (0, 200, 0)


def _subject(size: int = 128) -> Subject:
    """A warm, textured disc whose edge fades over 16 pixels, as hair and fur do."""
    y, x = np.mgrid[0:size, 0:size] / size
    distance = np.hypot(x - 0.5, y - 0.5) * size
    alpha = np.clip((size * 0.35 - distance) / 16 + 0.5, 0, 1)
    colours = np.stack([0.8 + 0.15 * x, 0.5 + 0.3 * y, 0.2 + 0.1 * np.sin(12 * x)], axis=-1)
    return Subject(alpha, colours)


def test_refined_edges_carry_far_less_of_the_old_wall_on_white_and_black() -> None:
    truth = _subject()
    photo = truth.on_wall(GREEN_WALL)
    alpha = Image.fromarray(np.round(truth.alpha * 255).astype(np.uint8), "L")

    plain = edge_colour_error(composite.cutout(photo, alpha), truth)
    refined = edge_colour_error(
        composite.cutout(photo, alpha, foreground.estimate(photo, alpha)), truth
    )

    assert refined < 0.5 * plain, f"edge colour error {refined:.2f} refined, {plain:.2f} plain"


def test_refining_changes_colours_only_never_the_mask(tmp_path: Path, tiny_model: Path) -> None:
    remover = load_remover(Settings(model_path=tiny_model, data_dir=tmp_path))
    photo = _subject().on_wall(GREEN_WALL)
    plain = remover.remove(photo, RemoveOptions(refine_foreground=False))
    refined = remover.remove(photo, RemoveOptions(refine_foreground=True))
    assert np.array_equal(np.asarray(plain.getchannel("A")), np.asarray(refined.getchannel("A")))
    assert not np.array_equal(np.asarray(plain), np.asarray(refined))
