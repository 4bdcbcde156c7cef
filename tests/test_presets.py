"""Presets where users meet them: over HTTP (saved, listed, replaced, deleted, used by an
upload with fields overriding them), in the store on SQLite and PostgreSQL, and on the
command line (`remove --preset`, reading the server's database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bgremover import Settings
from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.presets import (
    Preset,
    PresetStore,
    TooManyPresets,
    UnknownPreset,
    open_presets,
)
from bgremover.web import create_app

from .jobs_support import wait_for_job
from .serving import UI
from .test_cli import run_cli

WEB = {"name": "Web shop", "format": "webp", "background_color": "#00FF00", "priority": 7}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("presets"), model_path=tiny_model)
    with TestClient(create_app(settings), base_url="http://localhost", headers=UI) as test_client:
        yield test_client


def upload(client: TestClient, path: Path, **form: Any) -> Any:
    files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
    return client.post("/api/batches", files=files, data=form)


def ended(client: TestClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = wait_for_job(
        client, job_id, lambda job: job["status"] in ("completed", "failed", "cancelled")
    )
    return job


def test_presets_are_saved_listed_replaced_and_deleted(client: TestClient) -> None:
    created = client.post("/api/presets", json=WEB)
    assert created.status_code == 201, created.text
    assert created.json() == {
        **WEB, "background_color": "#00ff00", "alpha_matting": False,
        "refine_foreground": False, "post_process_mask": False, "temporal_smoothing": False,
        "model": None,
    }  # fmt: skip
    client.post("/api/presets", json={"name": "Masks", "format": "mask"})
    names = [p["name"] for p in client.get("/api/presets").json()]
    assert names == ["Masks", "Web shop"]
    replaced = client.post(
        "/api/presets", json={**WEB, "alpha_matting": True, "refine_foreground": True}
    )
    assert replaced.status_code == 200 and replaced.json()["alpha_matting"] is True
    assert replaced.json()["refine_foreground"] is True
    assert [p["name"] for p in client.get("/api/presets").json()] == names
    assert client.delete("/api/presets/Masks").status_code == 204
    gone = client.delete("/api/presets/Masks")
    assert gone.status_code == 404 and "Web shop" in gone.json()["error"]["message"]
    assert [p["name"] for p in client.get("/api/presets").json()] == ["Web shop"]


@pytest.mark.parametrize(
    "name", ["", " lead", "trail ", "../etc", "a/b", "<b>x</b>", "x" * 65, "é", "a\nb", "a.b"]
)
def test_preset_names_that_could_not_go_into_html_or_a_url_are_refused(
    client: TestClient, name: str
) -> None:
    response = client.post("/api/presets", json={"name": name})
    assert response.status_code == 422, response.text
    assert "preset name is 1–64 letters" in response.json()["error"]["message"]
    assert name not in [p["name"] for p in client.get("/api/presets").json()]


def test_preset_options_are_checked_like_an_uploads(client: TestClient) -> None:
    colour = client.post("/api/presets", json={"name": "bad", "background_color": "nope"})
    assert colour.status_code == 422 and "not a colour" in colour.json()["error"]["message"]
    fmt = client.post("/api/presets", json={"name": "bad", "format": "tiff"})
    assert fmt.status_code == 422
    extra = client.post("/api/presets", json={"name": "bad", "model": "other"})
    assert extra.status_code == 422
    foreign = client.post(
        "/api/presets", json={"name": "bad"}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    assert "bad" not in [p["name"] for p in client.get("/api/presets").json()]


def test_an_upload_takes_a_presets_options_and_fields_given_override_them(
    client: TestClient, photos: dict[str, Path]
) -> None:
    client.post("/api/presets", json=WEB)
    photo = photos["coffee.jpg"]
    as_preset = upload(client, photo, preset="Web shop").json()["jobs"][0]
    assert as_preset["priority"] == 7
    assert as_preset["options"] == {"format": "webp", "background_color": [0, 255, 0, 255]}
    overridden = upload(client, photo, preset="Web shop", format="png", priority="-3").json()
    job = overridden["jobs"][0]
    assert job["priority"] == -3
    assert job["options"] == {"background_color": [0, 255, 0, 255]}
    cleared = upload(client, photo, preset="Web shop", background_color="none").json()["jobs"][0]
    assert cleared["options"] == {"format": "webp"}
    refined = upload(client, photo, preset="Web shop", refine_foreground="true").json()["jobs"][0]
    assert refined["options"] == {
        "format": "webp", "background_color": [0, 255, 0, 255], "refine_foreground": True
    }  # fmt: skip
    assert ended(client, refined["id"])["status"] == "completed"

    done = ended(client, as_preset["id"])
    assert done["status"] == "completed" and done["result"]["format"] == "webp"
    result = client.get(f"/api/jobs/{as_preset['id']}/result")
    assert result.headers["content-type"] == "image/webp"
    done = ended(client, job["id"])
    assert done["result"]["format"] == "png"


def test_an_upload_naming_an_unknown_preset_is_refused_and_queues_nothing(
    client: TestClient, photos: dict[str, Path]
) -> None:
    client.post("/api/presets", json=WEB)
    before = client.get("/api/jobs").json()["total"]
    response = upload(client, photos["coffee.jpg"], preset="Nope")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_preset"
    assert "'Nope'" in error["message"] and "Web shop" in error["message"]
    assert client.get("/api/jobs").json()["total"] == before


def test_the_store_saves_replaces_and_deletes_on_each_database(database_url: str) -> None:
    engine = connect(database_url)
    migrate(engine)
    store = PresetStore(session_factory(engine), limit=2)
    try:
        assert store.save(Preset(name="A", format="jpeg", background_color="white"))
        assert not store.save(Preset(name="A", format="jpeg", background_color="rgb(1,2,3)"))
        assert store.get("A").background_color == "#010203"
        with pytest.raises(UnknownPreset, match="saved presets: A"):
            store.get("B")
        assert store.save(Preset(name="B"))
        with pytest.raises(TooManyPresets, match="2 presets are saved"):
            store.save(Preset(name="C"))
        assert not store.save(Preset(name="B", priority=3))  # replacing is no growth
        store.delete("B")
        store.delete("A")
        assert store.list() == []
    finally:
        engine.dispose()


@pytest.fixture
def saved_preset(tmp_path: Path) -> dict[str, str]:
    """A data dir whose database holds the preset "Web shop" (as the server would save it)."""
    env = {"BGREMOVER_DATA_DIR": str(tmp_path / "data")}
    with open_presets(Settings(data_dir=tmp_path / "data")) as store:
        store.save(Preset.model_validate(WEB))
    return env


def test_remove_with_a_preset_uses_its_options_and_flags_override_them(
    saved_preset: dict[str, str], photos: dict[str, Path], tiny_model: Path, tmp_path: Path
) -> None:
    model = ("--model-path", str(tiny_model))
    out = tmp_path / "out"
    result = run_cli("remove", photos["coffee.jpg"], "-o", out, "--preset", "Web shop", *model,
                     env=saved_preset)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with Image.open(out / "coffee-no-bg.webp") as image:
        assert image.format == "WEBP" and image.mode == "RGB"  # on the preset's green
    result = run_cli("remove", photos["coffee.jpg"], "-o", out, "--preset", "Web shop",
                     "--format", "png", "--bg-color", "none", "--refine-foreground", *model,
                     env=saved_preset)  # fmt: skip
    assert result.returncode == 0, result.stderr
    with Image.open(out / "coffee-no-bg.png") as image, Image.open(photos["coffee.jpg"]) as photo:
        assert image.mode == "RGBA"
        pixels, colour = np.asarray(image), np.asarray(photo.convert("RGB"))
    visible = pixels[..., 3] > 0
    # The tiny model's mask is soft everywhere: every visible pixel's colour is refined.
    assert visible.any() and not np.array_equal(pixels[visible, :3], colour[visible])


def test_remove_with_an_unknown_preset_names_the_database_and_the_saved_ones(
    saved_preset: dict[str, str], photos: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli("remove", photos["coffee.jpg"], "--preset", "Nope", env=saved_preset)
    assert result.returncode == 2
    assert "no preset named 'Nope'" in result.stderr
    assert "Web shop" in result.stderr and "jobs.sqlite3" in result.stderr
    assert not list(photos["coffee.jpg"].parent.glob("coffee-no-bg*"))
