"""`bgremover watch` against whoever may write to the watched folder DIR (README's threat
model: a shared drop folder). With the default output folder DIR/no-bg they also control OUT,
before the first run or by replacing it. Every link they plant there must be refused, never
followed: no file of the user's overwritten, no private photo processed, no result written
outside. Each attack runs a real watch process on a real folder with real links."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image

from bgremover.watch.ledger import FILE_NAME

from ..watch_support import Watching, launched, results, watching


def outcome(watch: Watching, rel: str) -> str:
    """The line that says how ``rel`` ended: done, failed or skipped."""
    return watch.wait_for(tuple(f"{status:<7} {rel} " for status in ("done", "failed", "skipped")))


def inbox(tmp_path: Path, photos: dict[str, Path]) -> tuple[Path, Path]:
    """A watched folder with one photo in it, and its default output folder."""
    folder = tmp_path / "drop"
    (folder / "no-bg").mkdir(parents=True)
    shutil.copy(photos["coffee.jpg"], folder / "coffee.jpg")
    return folder, folder / "no-bg"


def test_a_linked_ledger_temporary_file_does_not_overwrite_the_users_file(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str], secret: Path
) -> None:
    folder, out = inbox(tmp_path, photos)
    kept = secret.read_bytes()
    (out / f"{FILE_NAME}.tmp").symlink_to(secret)
    with watching(folder, env=local_env) as watch:
        outcome(watch, "coffee.jpg")
        watch.stop()
    assert secret.read_bytes() == kept, "the ledger was written into the user's file"
    ledger = out / FILE_NAME
    assert not ledger.is_symlink()
    assert json.loads(ledger.read_text())["files"]["coffee.jpg"]["status"] == "done"


def test_a_fifo_planted_as_the_ledger_stops_watch_with_the_fix_instead_of_hanging(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    folder, out = inbox(tmp_path, photos)
    os.mkfifo(out / FILE_NAME)
    with launched(folder, env=local_env) as watch:
        code, printed = watch.ended()
    assert code == 2, printed
    said = " ".join(printed.split())  # the console wraps a long message at its width
    assert f"{out / FILE_NAME} is unreadable" in said and "delete it" in said, printed


def test_a_linked_result_part_file_does_not_overwrite_the_users_file(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str], secret: Path
) -> None:
    folder, out = inbox(tmp_path, photos)
    kept = secret.read_bytes()
    (out / ".coffee-no-bg.png.part").symlink_to(secret)
    with watching(folder, env=local_env) as watch:
        line = outcome(watch, "coffee.jpg")
        watch.stop()
    assert secret.read_bytes() == kept, "the result was written into the user's file"
    assert line.startswith("done"), line
    result = out / "coffee-no-bg.png"
    assert not result.is_symlink()
    with Image.open(result) as image:
        assert image.format == "PNG" and image.mode == "RGBA"


def test_a_linked_subfolder_of_the_output_folder_gets_no_results(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    folder, out = inbox(tmp_path, photos)
    elsewhere = tmp_path / "users-documents"
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    (folder / "sub").mkdir()
    shutil.copy(photos["chelsea.jpg"], folder / "sub" / "cat.jpg")
    with watching(folder, env=local_env) as watch:
        line = outcome(watch, "sub/cat.jpg")
        assert outcome(watch, "coffee.jpg").startswith("done")  # the rest goes on
        watch.stop()
    assert list(elsewhere.iterdir()) == [], "a result was written through the link"
    assert line.startswith("failed"), line
    assert str(out / "sub") in line and "link" in line, line
    assert results(out) == ["coffee-no-bg.png"]


def test_an_output_folder_replaced_by_a_link_while_watched_gets_no_results(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    """Watch writes into the output folder it checked at the start, whatever takes its name."""
    folder, out = inbox(tmp_path, photos)
    elsewhere = tmp_path / "users-documents"
    elsewhere.mkdir()
    with watching(folder, env=local_env) as watch:
        outcome(watch, "coffee.jpg")
        out.rename(folder / "moved-away")
        out.symlink_to(elsewhere)
        shutil.copy(photos["chelsea.jpg"], folder / "cat.jpg")
        line = outcome(watch, "cat.jpg")
        watch.stop()
    assert list(elsewhere.iterdir()) == [], "results were written through the link"
    assert line.startswith("done"), line
    assert results(folder / "moved-away") == ["cat-no-bg.png", "coffee-no-bg.png"]


def test_a_private_photo_behind_a_linked_folder_and_a_planted_ledger_entry_is_not_processed(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    """The attacker links a folder of DIR to the user's photos and names a photo in it in the
    ledger as queued by a job that no longer exists: the watcher takes it up as new work."""
    folder, out = inbox(tmp_path, photos)
    private = tmp_path / "my-photos"
    private.mkdir()
    Image.open(photos["chelsea.jpg"]).save(private / "private.png")
    (folder / "linkdir").symlink_to(private)
    entry = {"size": 1, "mtime_ns": 1, "status": "queued", "job_id": str(uuid.uuid4())}
    ledger = {"version": 1, "files": {"linkdir/private.png": entry}}
    (out / FILE_NAME).write_text(json.dumps(ledger))
    with watching(folder, env=local_env) as watch:
        line = outcome(watch, "linkdir/private.png")
        watch.stop()
    assert not line.startswith("done"), "the private photo was processed"
    assert line.startswith("skipped") and "link" in line and "outside" in line, line
    assert "linkdir/private-no-bg.png" not in results(out)
    photo = hashlib.sha256((private / "private.png").read_bytes()).digest()
    stored = Path(local_env["BGREMOVER_DATA_DIR"])
    assert all(
        hashlib.sha256(p.read_bytes()).digest() != photo for p in stored.rglob("*") if p.is_file()
    ), "the private photo was copied into the job store"


@pytest.mark.parametrize(
    ("link", "args"),
    [
        ("no-bg", ()),  # the default output folder
        ("results", ("-o", "{folder}/results")),
        ("a", ("-o", "{folder}/a/out")),  # a folder on the way to it
    ],
)
def test_an_output_folder_reached_through_a_link_inside_dir_is_refused(
    tmp_path: Path,
    photos: dict[str, Path],
    local_env: dict[str, str],
    link: str,
    args: tuple[str, ...],
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    shutil.copy(photos["coffee.jpg"], folder / "coffee.jpg")
    elsewhere = tmp_path / "users-documents"
    (elsewhere / "out").mkdir(parents=True)
    (folder / link).symlink_to(elsewhere)
    with launched(folder, *(a.format(folder=folder) for a in args), env=local_env) as watch:
        first = watch.wait_for("")
        assert not first.startswith("Watching"), f"watch followed {folder / link}: {first}"
        code, printed = watch.ended()
    assert code == 2, printed
    assert f"{folder / link} is a link" in printed and "-o" in printed, printed
    assert results(elsewhere) == [] and not (elsewhere / FILE_NAME).exists()
    assert not (elsewhere / "out" / FILE_NAME).exists()


def test_an_output_folder_the_user_names_outside_dir_may_be_a_link(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    """Links the user makes outside DIR are theirs: `-o ~/Results` may point at another disk."""
    folder, _ = inbox(tmp_path, photos)
    disk = tmp_path / "disk" / "results"
    disk.mkdir(parents=True)
    (tmp_path / "Results").symlink_to(disk)
    with watching(folder, "-o", str(tmp_path / "Results"), env=local_env) as watch:
        assert outcome(watch, "coffee.jpg").startswith("done")
        watch.stop()
    assert results(disk) == ["coffee-no-bg.png"]
