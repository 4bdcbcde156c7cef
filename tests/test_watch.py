"""`bgremover watch` as a user runs it: a real process watching a real folder, alone (its
own job system) and sending to a real `bgremover serve`. Every wait is on what the process
prints or on files appearing, never on a clock; a slow copy is a file kept open for writing
while other work goes on."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
from PIL import Image
from rich.console import Console

from bgremover.watch.backend import Update
from bgremover.watch.folder import Rules
from bgremover.watch.ledger import FILE_NAME, Ledger, LedgerError
from bgremover.watch.nolinks import LinkRefused, OutputFolder, open_source
from bgremover.watch.runner import Display, Runner

from .serving import UI, served
from .watch_support import TIMEOUT_S, Watching, results, watching


def receive(folder: Path, photos: dict[str, Path], env: dict[str, str], *args: str) -> str:
    """Watch ``folder`` (with ``args``) while it receives what a watch folder gets: a photo
    there before the start, a slowly written one (open while another is copied in and
    processed), a finished photo moved in, a text file, a file named like a result and a file
    in the output folder.
    Returns what the watcher printed."""
    (folder / "no-bg").mkdir(parents=True)
    shutil.copy(photos["coffee.jpg"], folder / "coffee.jpg")
    with watching(folder, *args, env=env) as watch:
        watch.wait_for("done    coffee.jpg")
        write_while_watched(watch, folder, photos)
        return watch.stop()


def write_while_watched(watch: Watching, folder: Path, photos: dict[str, Path]) -> None:
    slow = folder / "sub" / "slow.jpg"
    slow.parent.mkdir()
    data = photos["chelsea.jpg"].read_bytes()
    with slow.open("wb") as writer:
        writer.write(data[: len(data) // 3])
        writer.flush()
        shutil.copy(photos["astronaut.jpg"], folder / "fast.jpg")
        watch.wait_for("done    fast.jpg")
        assert not any("slow.jpg" in line for line in watch.lines), watch.lines
        for start in range(len(data) // 3, len(data), 4096):
            writer.write(data[start : start + 4096])
            writer.flush()
    outside = folder.parent / "saved-elsewhere.jpg"
    shutil.copy(photos["coffee.jpg"], outside)
    outside.replace(folder / "moved.jpg")  # a finished file moved in: taken at once
    (folder / "notes.txt").write_text("not a photo\n")
    Image.open(photos["coffee.jpg"]).save(folder / "cup-no-bg.png")
    shutil.copy(photos["coffee.jpg"], folder / "no-bg" / "dropped-in-output.jpg")
    watch.wait_for("done    sub/slow.jpg")
    watch.wait_for("done    moved.jpg")
    for name in ("notes.txt", "cup-no-bg.png"):
        watch.wait_for(f"skipped {name}")


def check_outcome(output: str, out: Path, extension: str) -> None:
    assert results(out) == [
        f"coffee-no-bg{extension}",
        "dropped-in-output.jpg",
        f"fast-no-bg{extension}",
        f"moved-no-bg{extension}",
        f"sub/slow-no-bg{extension}",
    ], output
    with Image.open(out / "sub" / f"slow-no-bg{extension}") as image:
        assert image.size == (451, 300)  # the whole photo, not a third of it
    slow = [line.split()[0] for line in output.splitlines() if "slow.jpg" in line]
    assert slow == ["queued", "done"], output  # taken once, when complete
    assert "notes.txt is not an image" in output
    assert "named like a result" in output
    assert "dropped-in-output" not in output
    assert "Stopped watching: 4 done, 2 skipped this run" in output


def test_a_name_or_stage_that_looks_like_markup_is_shown_as_it_is() -> None:
    """A file "b].jpg" in a folder "x[" is the row "x[/b].jpg", and a server names the
    stage: neither is Rich markup, which stopped the watch with MarkupError."""
    out = io.StringIO()
    display = Display(Console(file=out, force_terminal=True, width=120))
    with display.progress:
        display.show("job-1", "x[/b].jpg")
        display.update(Update("job-1", "processing", 40.0, "[/]"))
        display.progress.refresh()
    assert "x[/b].jpg" in out.getvalue() and "[/]" in out.getvalue()


class OddServer:
    """A server answering with a result format this version has never heard of."""

    def start(self, report: object) -> None:
        pass

    def submit(self, file: BinaryIO, name: str) -> str:
        return "job-1"

    def state(self, job_id: str) -> Update | None:
        return None

    def save_result(self, job_id: str, out: BinaryIO) -> None:
        out.write(b"whatever the server sends")

    def stop(self) -> None:
        pass


def test_a_result_format_the_watcher_does_not_know_fails_that_file_not_the_watch(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It raised ValueError out of the watch loop; now the file fails with the reason."""
    folder, out = tmp_path / "inbox", tmp_path / "inbox" / "no-bg"
    out.mkdir(parents=True)
    shutil.copy(photos["coffee.jpg"], folder / "coffee.jpg")
    display = Display(Console(file=io.StringIO()))  # not a terminal: one line per file
    with OutputFolder.open(folder, out) as output:
        runner = Runner(Rules(folder, out), output, OddServer(), Ledger(output), display, 0.0)
        runner._submit(folder / "coffee.jpg")
        runner._handle(Update("job-1", "completed", 100.0, result_format="tiff"))

    printed = capsys.readouterr().out
    assert "failed  coffee.jpg" in printed
    assert "'tiff'" in printed and "update bgremover" in printed
    assert results(out) == [], "nothing was written under a made-up name"
    assert runner.summary() == "Stopped watching: 1 failed this run"


def test_a_ledger_that_is_not_ours_stops_watch_with_its_path_and_the_fix(tmp_path: Path) -> None:
    """The ledger is a file in the output folder: edited, truncated or from another tool, it
    is refused with a message naming it and what to do, never a traceback."""
    out = tmp_path / "no-bg"
    out.mkdir()
    entry = '{"size": 1, "mtime_ns": 1, "status": "%s"}'
    for bad in (
        '{"version": 1, "files": {"a.jpg": {"size": 1}}}',
        '{"version": 1, "files": 3}',
        '{"version": 1, "files": {"a.jpg": %s}}' % (entry % "gone"),
        # Entries name files under the watched folder; one that climbs out would be uploaded.
        '{"version": 1, "files": {"../../secret.jpg": %s}}' % (entry % "queued"),
        '{"version": 1, "files": {"/home/someone/secret.jpg": %s}}' % (entry % "queued"),
    ):
        (out / FILE_NAME).write_text(bad)
        with (
            OutputFolder.open(tmp_path, out) as output,
            pytest.raises(LedgerError, match="delete it"),
        ):
            Ledger(output)
    (out / FILE_NAME).unlink()
    (out / FILE_NAME).symlink_to(tmp_path / "elsewhere.json")
    with OutputFolder.open(tmp_path, out) as output, pytest.raises(LedgerError) as refused:
        Ledger(output)
    assert f"{out / FILE_NAME} is a link" in str(refused.value)
    assert "remove it" in str(refused.value)


def test_a_link_to_a_file_outside_the_folder_is_refused(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    """Whoever may drop files into a shared watch folder must not get one of the user's own
    photos processed (and its cut-out written beside theirs) by dropping a link to it. Links
    that stay inside the folder are the user's own and are followed."""
    private, watched = tmp_path / "private", tmp_path / "drop"
    private.mkdir()
    (watched / "sub").mkdir(parents=True)
    shutil.copy(photos["chelsea.jpg"], private / "secret.jpg")
    shutil.copy(photos["coffee.jpg"], watched / "coffee.jpg")
    (watched / "sub" / "looks-innocent.jpg").symlink_to(private / "secret.jpg")
    (watched / "again.jpg").symlink_to(watched / "coffee.jpg")  # inside: a link is fine
    (watched / "alias").symlink_to(watched / "sub")
    shutil.copy(photos["coffee.jpg"], watched / "sub" / "cup.jpg")
    with pytest.raises(LinkRefused, match="outside"):
        open_source(watched, watched / "sub" / "looks-innocent.jpg")
    coffee = photos["coffee.jpg"].read_bytes()
    for inside in ("again.jpg", "coffee.jpg", "alias/cup.jpg"):
        with open_source(watched, watched / inside) as file:
            assert file.read() == coffee


def test_alone_images_become_results_once_complete_and_nothing_else_is_processed(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    folder = tmp_path / "inbox"
    output = receive(folder, photos, local_env)
    check_outcome(output, folder / "no-bg", ".png")
    with Image.open(folder / "no-bg" / "fast-no-bg.png") as image:
        assert image.mode == "RGBA"


def test_a_restart_redoes_nothing_and_takes_the_files_added_while_it_was_stopped(
    tmp_path: Path, photos: dict[str, Path], local_env: dict[str, str]
) -> None:
    folder, out = tmp_path / "inbox", tmp_path / "results"
    (folder / "deep").mkdir(parents=True)
    shutil.copy(photos["coffee.jpg"], folder / "deep" / "coffee.jpg")
    (folder / "notes.txt").write_text("not a photo\n")
    with watching(folder, "-o", str(out), env=local_env) as watch:
        watch.wait_for("done    deep/coffee.jpg")
        watch.wait_for("skipped notes.txt")
        first = watch.stop()
    assert "1 done, 1 skipped" in first
    made = (out / "deep" / "coffee-no-bg.png").stat().st_mtime_ns
    shutil.copy(photos["chelsea.jpg"], folder / "chelsea.jpg")

    with watching(folder, "-o", str(out), env=local_env) as watch:
        watch.wait_for("done    chelsea.jpg")
        second = watch.stop()
    assert "coffee" not in second and "notes.txt" not in second, second
    assert "Stopped watching: 1 done this run" in second
    assert (out / "deep" / "coffee-no-bg.png").stat().st_mtime_ns == made
    assert results(out) == ["chelsea-no-bg.png", "deep/coffee-no-bg.png"]
    ledger = json.loads((out / ".bgremover-watch.json").read_text())["files"]
    assert {rel: e["status"] for rel, e in ledger.items()} == {
        "chelsea.jpg": "done", "deep/coffee.jpg": "done", "notes.txt": "skipped"
    }  # fmt: skip


TOKEN = "UFdFASasGzr8thwVY_XiKectAUq2sEtO-AzKoefAVdk"


def test_with_a_server_jobs_show_there_and_results_land_in_the_output_folder(
    tmp_path: Path, photos: dict[str, Path], tiny_model: Path
) -> None:
    server_env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_TOKEN": TOKEN}
    with served(tmp_path / "server", env=server_env) as (url, _):
        auth = {**UI, "Authorization": f"Bearer {TOKEN}"}
        saved = httpx.post(f"{url}/api/presets", json={"name": "Shop", "format": "webp"},
                           headers=auth)  # fmt: skip
        assert saved.status_code == 201, saved.text
        folder = tmp_path / "inbox"
        # The watcher's own data folder is empty: everything happens on the server.
        env = {"BGREMOVER_DATA_DIR": str(tmp_path / "elsewhere"), "BGREMOVER_TOKEN": TOKEN}
        output = receive(folder, photos, env, "--server", url, "--preset", "Shop")
        check_outcome(output, folder / "no-bg", ".webp")
        with Image.open(folder / "no-bg" / "fast-no-bg.webp") as image:
            assert image.format == "WEBP"
        jobs = httpx.get(f"{url}/api/jobs", headers=auth).json()["items"]
        names = sorted(j["file_name"] for j in jobs)
        assert names == ["coffee.jpg", "fast.jpg", "moved.jpg", "slow.jpg"]
        batches = httpx.get(f"{url}/api/batches", headers=auth).json()["items"]
        assert [b["name"] for b in batches] == ["Watch: inbox"]
        assert not (tmp_path / "elsewhere").exists()

        # Killed right after queueing a photo: the next start follows that job (which may
        # have ended meanwhile) instead of uploading the photo again.
        shutil.copy(photos["coffee.jpg"], folder / "late.jpg")
        with watching(folder, "--server", url, env=env) as watch:
            watch.wait_for("queued  late.jpg")
            watch.process.kill()
        with watching(folder, "--server", url, env=env) as watch:
            watch.wait_for("done    late.jpg")
            output = watch.stop()
        assert "queued  late.jpg" not in output
        assert (folder / "no-bg" / "late-no-bg.png").is_file()
        jobs = httpx.get(f"{url}/api/jobs", headers=auth, params={"q": "late"}).json()["items"]
        assert len(jobs) == 1

        unknown = subprocess.run(
            [sys.executable, "-m", "bgremover", "watch", str(folder), "--server", url,
             "--preset", "Nope"],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=TIMEOUT_S,
        )  # fmt: skip
        assert unknown.returncode == 2
        assert "no preset named 'Nope' (saved presets: Shop)" in unknown.stderr
        no_token = subprocess.run(
            [sys.executable, "-m", "bgremover", "watch", str(folder), "--server", url],
            env={**os.environ, "BGREMOVER_TOKEN": ""}, capture_output=True, text=True,
            timeout=TIMEOUT_S,
        )  # fmt: skip
        assert no_token.returncode == 2 and "BGREMOVER_TOKEN" in no_token.stderr
