"""Shared fixtures: real sample photos, bad inputs made from them, and one loaded model."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.tiny_model import build_tiny_model
from PIL import Image
from pillow_heif import register_heif_opener

from bgremover import Remover, Settings, load_remover

from .jobs_support import Harness, build_harness, postgres_database

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# Points checked by eye on the results: (x, y) in the upright photo.
SUBJECT_POINTS = {
    "chelsea.jpg": [(200, 150), (120, 120)],  # the cat's face
    "astronaut.jpg": [(221, 120), (250, 350)],  # face, suit
    "coffee.jpg": [(287, 150), (200, 250)],  # cup, saucer
}
BACKGROUND_POINTS = {
    "chelsea.jpg": [(445, 5), (440, 60)],  # wall top right
    "astronaut.jpg": [(10, 10), (500, 10), (20, 300)],  # flag, studio backdrop
    "coffee.jpg": [(5, 5), (595, 395), (590, 10)],  # table corners
}


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    return {p.name: p for p in sorted(SAMPLES.glob("*.jpg"))}


@pytest.fixture(scope="session")
def remover() -> Remover:
    """The real fp16 ISNet model, loaded once (fetched by scripts/test.sh when missing)."""
    return load_remover(Settings())


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def phone_photos(
    tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]
) -> dict[str, Path]:
    """The cat photo as a phone saves it: HEIC (encoded by pillow-heif) and AVIF (by Pillow)."""
    register_heif_opener()
    folder = tmp_path_factory.mktemp("phone")
    photo = Image.open(photos["chelsea.jpg"])
    paths = {}
    for name, fmt in (("chelsea.heic", "HEIF"), ("chelsea.avif", "AVIF")):
        paths[name] = folder / name
        paths[name].write_bytes(encode(photo, fmt, quality=90))
    return paths


@pytest.fixture(scope="session")
def bad_inputs(
    tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]
) -> dict[str, Path]:
    """Every kind of bad input the product must survive, as files, keyed by error code."""
    folder = tmp_path_factory.mktemp("bad")
    jpeg = photos["chelsea.jpg"].read_bytes()
    png = encode(Image.open(photos["coffee.jpg"]), "PNG")
    files = {
        "empty_file": b"",
        "not_an_image": b"Dear diary, this is not a photo at all.\n" * 20,
        "corrupt_image_jpeg": jpeg[: len(jpeg) // 2],
        "corrupt_image_png": png[: len(png) // 2],
        # 110 megapixels of 1-bit black: a 14 kB file that would need 440 MB as RGBA.
        "image_too_large": encode(Image.new("1", (11_000, 10_000)), "PNG"),
        # A real HEIF file header followed by nothing usable: HEIC is decoded, this is not.
        "corrupt_image_heif": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64,
        # A JPEG XL codestream's start: an image format we do not decode.
        "unsupported_format": b"\xff\x0a\xfa\x7f\x01\x90\x08" + b"\0" * 64,
    }
    names = {
        "empty_file": "empty.jpg",
        "not_an_image": "letter.jpg",
        "corrupt_image_jpeg": "truncated.jpg",
        "corrupt_image_png": "truncated.png",
        "image_too_large": "bomb.png",
        "corrupt_image_heif": "broken.heic",
        "unsupported_format": "photo.jxl",
    }
    paths = {}
    for key, data in files.items():
        path = folder / names[key]
        path.write_bytes(data)
        paths[key] = path
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ISNet-shaped ONNX model that runs in a tenth of a second: for tests of the job
    system rather than the network (one 1024×1024 MatMul, so a run is not instant)."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx", matmuls=1)


@pytest.fixture
def local_env(tmp_path: Path, tiny_model: Path) -> dict[str, str]:
    """The environment of a `bgremover watch` that runs its own jobs, on the tiny model."""
    return {"BGREMOVER_DATA_DIR": str(tmp_path / "data"), "BGREMOVER_MODEL_PATH": str(tiny_model)}


@pytest.fixture(scope="session")
def slow_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run long enough (seconds, not milliseconds) to be cancelled or killed mid-way."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "slow.onnx", matmuls=12)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests on a real SQLite file and a real PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def harness(tmp_path: Path, database_url: str) -> Harness:
    return build_harness(tmp_path, database_url)
