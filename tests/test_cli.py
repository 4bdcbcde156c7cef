"""The command line as a user runs it: a real process, real files, real model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.model


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    columns: int = 250,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a script would: stdout and stderr are pipes, not a terminal."""
    env = {**os.environ, **(env or {}), "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "bgremover", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def mask_of(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) >= 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture
def mixed_folder(tmp_path: Path, photos: dict[str, Path], bad_inputs: dict[str, Path]) -> Path:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(photos["coffee.jpg"], folder / "coffee.jpg")
    shutil.copy(photos["chelsea.jpg"], folder / "nested" / "chelsea.jpg")
    for path in bad_inputs.values():
        shutil.copy(path, folder / path.name)
    return folder


def test_bad_files_fail_alone_with_reasons_and_good_files_complete(
    mixed_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_cli("remove", mixed_folder, "-o", out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "coffee-no-bg.png",
        "nested",
        "nested/chelsea-no-bg.png",
    ]
    with Image.open(out / "coffee-no-bg.png") as image:
        assert image.mode == "RGBA" and image.size == (600, 400)
    for reason in (
        "the file is empty",
        "not an image",
        "truncated or corrupt",
        "110 megapixels",
        "image/jxl images are not supported",
    ):
        assert reason in result.stdout, f"summary lacks {reason!r}:\n{result.stdout}"
    assert "2 done, 7 failed" in result.stderr


def test_heic_and_avif_photos_give_the_same_mask_as_the_jpeg(
    photos: dict[str, Path], phone_photos: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    for source in (photos["chelsea.jpg"], *phone_photos.values()):
        kind = source.suffix.lstrip(".")
        shutil.copy(source, folder / f"{kind}{source.suffix}")
    result = run_cli("remove", folder, "--format", "mask")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 done" in result.stderr
    jpeg = mask_of(folder / "jpg-mask.png")
    for name in ("heic-mask.png", "avif-mask.png"):
        assert iou(mask_of(folder / name), jpeg) >= 0.97, name


def test_piped_output_is_one_whole_line_per_file_at_any_width(
    photos: dict[str, Path], bad_inputs: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "holiday-photos-from-the-whole-family-2026" / "at-the-seaside-in-june"
    folder.mkdir(parents=True)
    good = folder / "a-rather-long-file-name-straight-from-a-phone-camera-roll-0001.jpg"
    bad = folder / "visiting-the-lighthouse-on-the-last-afternoon-of-the-trip.jpg"
    shutil.copy(photos["coffee.jpg"], good)
    shutil.copy(bad_inputs["not_an_image"], bad)
    result = run_cli("remove", good, bad, tmp_path / "missing.jpg", columns=80)
    assert result.returncode == 1
    assert "…" not in result.stdout and "━" not in result.stdout  # no ellipsis, no bar
    rows = {path: rest for path, *rest in (line.split("\t") for line in result.stdout.splitlines())}
    assert set(rows) == {str(good), str(bad), str(tmp_path / "missing.jpg")}
    output = good.with_name(good.stem + "-no-bg.png")
    assert rows[str(good)] == ["done", str(output)] and output.is_file()
    status, reason = rows[str(bad)]
    assert status == "failed" and reason.startswith(f"{bad}: not an image")
    assert rows[str(tmp_path / "missing.jpg")][0] == "failed"
    assert result.stderr.strip().endswith("1 done, 2 failed")


def test_json_summary_lists_every_file_with_its_outcome_and_the_counts(
    photos: dict[str, Path], bad_inputs: dict[str, Path], tmp_path: Path
) -> None:
    good = tmp_path / "coffee.jpg"
    shutil.copy(photos["coffee.jpg"], good)
    bad = bad_inputs["unsupported_format"]
    result = run_cli("remove", good, bad, "--json", "-o", tmp_path / "out")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"done": 1, "failed": 1, "skipped": 0, "cancelled": 0}
    files = {f["path"]: f for f in summary["files"]}
    assert files[str(good)] == {
        "path": str(good), "status": "done", "output": str(tmp_path / "out" / "coffee-no-bg.png"),
        "reason": None, "code": None,
    }  # fmt: skip
    assert files[str(bad)]["status"] == "failed"
    assert files[str(bad)]["code"] == "unsupported_format"
    assert "image/jxl images are not supported" in files[str(bad)]["reason"]
    again = json.loads(run_cli("remove", good, "--json", "-o", tmp_path / "out").stdout)
    assert again["files"][0]["status"] == "skipped"


def test_existing_outputs_are_skipped_unless_overwrite(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "coffee.jpg"
    shutil.copy(photos["coffee.jpg"], source)
    assert run_cli("remove", source).returncode == 0
    output = tmp_path / "coffee-no-bg.png"
    first = output.stat().st_mtime_ns
    again = run_cli("remove", source)
    assert again.returncode == 0 and "1 skipped" in again.stderr
    assert output.stat().st_mtime_ns == first
    forced = run_cli("remove", source, "--overwrite", "--format", "webp", "--bg-color", "white")
    assert forced.returncode == 0 and "1 done" in forced.stderr
    with Image.open(tmp_path / "coffee-no-bg.webp") as image:
        assert image.format == "WEBP"


def test_a_name_that_looks_like_markup_is_shown_as_it_is(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    """A folder "x[" holding "b].jpg" makes the row name "x[/b].jpg", which Rich would read
    as a closing tag: the command must show the name as it is, not stop with MarkupError."""
    folder = tmp_path / "in" / "x["
    folder.mkdir(parents=True)
    shutil.copy(photos["chelsea.jpg"], folder / "b].jpg")
    # FORCE_COLOR: Rich takes stdout for a terminal and draws its progress rows.
    result = run_cli("remove", "in", "-o", "out", cwd=tmp_path, env={"FORCE_COLOR": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "out" / "x[" / "b]-no-bg.png").is_file()
    assert "in/x[/b].jpg" in result.stdout and "out/x[/b]-no-bg.png" in result.stdout


def test_globs_and_missing_paths(photos: dict[str, Path], tmp_path: Path) -> None:
    for name in ("coffee.jpg", "chelsea.jpg"):
        shutil.copy(photos[name], tmp_path / name)
    result = run_cli(
        "remove",
        str(tmp_path / "c*.jpg"),
        tmp_path / "missing.jpg",
        "-o",
        tmp_path / "out",
        "--format",
        "mask",
    )
    assert result.returncode == 1
    assert "no such file or directory" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "chelsea-mask.png",
        "coffee-mask.png",
    ]


def test_unwritable_output_directory_fails_each_file_clearly(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    result = run_cli("remove", photos["coffee.jpg"], "-o", blocker / "out")
    assert result.returncode == 1
    assert "cannot write output there" in result.stdout
    assert "1 failed" in result.stderr


def test_invalid_options_are_refused_before_any_work(photos: dict[str, Path]) -> None:
    result = run_cli("remove", photos["coffee.jpg"], "--bg-color", "not-a-colour")
    assert result.returncode == 2
    assert "is not a colour" in result.stderr


def test_models_info_reports_a_verified_model() -> None:
    result = run_cli("models", "info")
    assert result.returncode == 0
    assert "isnet-general-use" in result.stdout and "verified" in result.stdout


def test_ctrl_c_mid_batch_keeps_what_is_done_and_leaves_no_partial_file(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    """SIGINT once the first photo is done: the images in the lanes stop, each finished one is
    whole, nothing else is written (not even a temporary file), and the exit status is 130."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"{i}-{name}" for i in range(4) for name in sorted(photos)]
    for name in names:
        shutil.copy(photos[name.split("-", 1)[1]], folder / name)
    out = tmp_path / "out"
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    with (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bgremover", "remove", str(folder), "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        assert process.stdout is not None
        first = process.stdout.readline()  # one line per file as it ends
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()  # what readline buffered too, to the end
        process.wait(timeout=120)
    lines = [line.split("\t") for line in (first + rest).splitlines()]

    assert process.returncode == 130
    assert len(lines) == len(names), f"every file gets its line:\n{first + rest}"
    done = {Path(output).name for _, status, output in lines if status == "done"}
    assert done and all(status in ("done", "cancelled") for _, status, _ in lines)
    assert any(status == "cancelled" for _, status, _ in lines), "the batch was not stopped"
    assert {p.name for p in out.iterdir()} == done, "an unfinished image left a file"
    for name in done:
        with Image.open(out / name) as image:
            image.load()  # whole, not truncated
