"""Model families (ISNet, ISNet anime, U²-Net, BiRefNet, BRIA RMBG-1.4) and the models a user
adds from files: each family's masks against its reference formula, on generated ONNX files
shaped as the published ones, and the checks ``models add`` makes."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bgremover import ModelError
from bgremover.config import Settings
from bgremover.engine import RemoveOptions, Remover
from bgremover.engine.models import BiRefNet, ModelStore, families
from bgremover.engine.models.fp32 import batched_bytes
from bgremover.engine.stages import STAGES, Stage
from bgremover.jobs.database import connect, migrate, session_factory
from bgremover.jobs.eta.clock import StageClock
from bgremover.jobs.eta.timings import TimingStore
from bgremover.jobs.snapshots import job_eta
from bgremover.jobs.tables import JobRow
from bgremover.web import create_app
from bgremover.workers.removers import Removers

from .family_models import SHAPES, build_family_model
from .jobs_support import wait_for_job
from .serving import UI, follow, job_ended, served
from .test_cli import run_cli

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The published rules, written out here rather than read from our classes: input side,
# per-channel mean and std on pixels divided by the image's brightest value, which output is
# the prediction and whether it is logits (sigmoid it). Sources: rembg's sessions and each
# model's own inference code (see the family classes' docstrings).
REFERENCE: dict[str, dict[str, object]] = {
    "isnet": {"side": 1024, "mean": (0.5,) * 3, "std": (1.0,) * 3, "output": 0},
    "isnet-anime": {"side": 1024, "mean": IMAGENET_MEAN, "std": (1.0,) * 3, "output": 0},
    "u2net": {"side": 320, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "output": 0},
    "birefnet": {
        "side": 1024, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "output": -1, "sigmoid": True,
    },
    "bria-rmbg": {"side": 1024, "mean": (0.5,) * 3, "std": (1.0,) * 3, "output": 0},
}  # fmt: skip


def sample_image() -> Image.Image:
    """300×200, colours that tell the channels apart, brightest value 200 (so the divide by
    the image's maximum matters)."""
    y, x = np.mgrid[0:200, 0:300].astype(np.float32)
    red = 200 * (x / 299)
    green = 200 * (y / 199)
    blue = 100 + 100 * np.sin(x / 17) * np.cos(y / 23)
    pixels = np.stack([red, green, blue], axis=-1)
    pixels[60:140, 100:200] = (200, 30, 60)  # a subject the weights make stand out
    return Image.fromarray(np.round(pixels).astype(np.uint8), mode="RGB")


def reference_mask(model_file: Path, image: Image.Image, rule: dict[str, object]) -> np.ndarray:
    """rembg's pipeline with the family's rule: the mask at the image's size, uint8."""
    side = int(rule["side"])  # type: ignore[call-overload]
    resized = np.array(image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))
    scaled = resized / max(np.max(resized), 1e-6)
    normalised = (scaled - np.array(rule["mean"])) / np.array(rule["std"])
    tensor = normalised.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: tensor})
    prediction = outputs[int(rule["output"])][:, 0, :, :]  # type: ignore[call-overload]
    if rule.get("sigmoid"):
        prediction = 1 / (1 + np.exp(-prediction))
    prediction = np.squeeze((prediction - prediction.min()) / (prediction.max() - prediction.min()))
    mask = Image.fromarray((prediction * 255).astype(np.uint8), mode="L")
    return np.asarray(mask.resize(image.size, Image.Resampling.LANCZOS), dtype=np.int16)


def test_every_family_has_a_reference_and_a_generated_file() -> None:
    assert set(families()) == set(REFERENCE) == set(SHAPES)


@pytest.mark.parametrize("family", sorted(REFERENCE))
def test_family_mask_matches_its_reference_formula(tmp_path: Path, family: str) -> None:
    model_file = build_family_model(tmp_path / f"{family}.onnx", family)
    store = ModelStore(tmp_path / "models")
    store.catalog.add(f"my-{family}", family, model_file)
    resolved = store.resolve(f"my-{family}")
    image = sample_image()

    ours = np.asarray(Remover(resolved).remove(image, RemoveOptions(format="mask")), np.int16)

    rule = REFERENCE[family]
    expected = reference_mask(model_file, image, rule)
    # We round where rembg truncates to uint8 (and compute in float32): a level apart before
    # the Lanczos resize, whose lobes can make that three at a sharp edge.
    difference = np.abs(ours - expected)
    assert difference.max() <= 3 and difference.mean() < 1.0
    # ... while another family's normalisation is far off: the comparison can tell them apart.
    other_mean = (0.5,) * 3 if rule["mean"] == IMAGENET_MEAN else IMAGENET_MEAN
    wrong = reference_mask(model_file, image, {**rule, "mean": other_mean})
    assert np.abs(ours - wrong).mean() > 3
    assert resolved.model.family == family


def test_birefnet_reads_its_last_output_when_the_runtime_copy_cannot_be_cached(
    tmp_path: Path,
) -> None:
    """A file run as it is (all outputs kept) gives the same mask as its fp32 copy."""
    model_file = build_family_model(tmp_path / "birefnet.onnx", "birefnet")
    store = ModelStore(tmp_path / "models")
    store.catalog.add("bi", "birefnet", model_file)
    cached = store.resolve("bi")
    as_is = type(cached)(cached.model, cached.name, cached.sha256, cached.path, cached.path)
    image = sample_image()
    options = RemoveOptions(format="mask")
    assert np.array_equal(
        np.asarray(Remover(cached).remove(image, options)),
        np.asarray(Remover(as_is).remove(image, options)),
    )
    # What an accelerator loads keeps the same output, and takes any number of images.
    batched = onnx.load_from_string(batched_bytes(model_file, BiRefNet.output_index))
    assert [output.name for output in batched.graph.output] == ["output_image"]
    assert batched.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_added_model_records_its_sha256_and_resolves_to_it(tmp_path: Path) -> None:
    model_file = build_family_model(tmp_path / "u2net.onnx", "u2net")
    store = ModelStore(tmp_path / "models")
    entry = store.catalog.add("people", "u2net", model_file, "U²-Net for people")
    assert entry.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert entry.size_bytes == model_file.stat().st_size
    assert entry.path == str(model_file.resolve())
    # Another process (a worker) reading the same models folder sees the same model.
    resolved = ModelStore(tmp_path / "models").resolve("people")
    assert (resolved.name, resolved.sha256, resolved.path) == ("people", entry.sha256, model_file)


@pytest.mark.parametrize(
    ("family", "build", "message"),
    [
        ("birefnet", {"family": "u2net"}, r"one input of shape \[N, 3, 1024, 1024\]"),
        ("u2net", {"family": "u2net", "channels": 4}, r"one input of shape \[N, 3, 320, 320\]"),
        ("u2net", {"family": "u2net", "output_channels": 2}, r"output 0 output is \[N, 1, 320"),
    ],
)
def test_add_refuses_a_file_with_another_familys_shapes(
    tmp_path: Path, family: str, build: dict[str, object], message: str
) -> None:
    model_file = build_family_model(tmp_path / "model.onnx", **build)  # type: ignore[arg-type]
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelError, match=message) as caught:
        store.catalog.add("wrong", family, model_file)
    assert caught.value.code == "model_shape"
    assert store.catalog.entries() == {}


def test_add_refuses_a_file_that_is_not_onnx_or_not_there(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    not_onnx = tmp_path / "photo.onnx"
    not_onnx.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="not an ONNX file") as caught:
        store.catalog.add("png", "isnet", not_onnx)
    assert caught.value.code == "model_corrupt"
    with pytest.raises(ModelError, match="no such file"):
        store.catalog.add("gone", "isnet", tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="unknown model family 'sam'"):
        store.catalog.add("sam", "sam", not_onnx)
    with pytest.raises(ModelError, match="built-in model"):
        store.catalog.add("isnet-general-use", "isnet", not_onnx)


def test_a_machine_without_the_file_or_with_another_file_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    model_file = build_family_model(tmp_path / "bria.onnx", "bria-rmbg")
    store = ModelStore(tmp_path / "models")
    store.catalog.add("bria", "bria-rmbg", model_file)

    build_family_model(model_file, "isnet")  # replaced by other weights
    with pytest.raises(ModelError, match="changed since it was added") as changed:
        store.resolve("bria")
    assert changed.value.code == "model_corrupt"

    model_file.unlink()
    with pytest.raises(ModelError, match="not on this machine") as missing:
        store.resolve("bria")
    assert missing.value.code == "model_unavailable"
    assert "bgremover models add bria --family bria-rmbg --file" in missing.value.message


DESCRIPTION = "BiRefNet [bold]general[/]"
"""Text, not markup: the catalog's words are shown as they were given."""


def test_models_add_list_remove_on_the_command_line(tmp_path: Path) -> None:
    model_file = build_family_model(tmp_path / "birefnet-general.onnx", "birefnet")
    env = {"BGREMOVER_CACHE_DIR": str(tmp_path / "cache"), "BGREMOVER_DATA_DIR": str(tmp_path)}

    added = run_cli(
        "models", "add", "birefnet-general", "--family", "birefnet", "--file", model_file,
        "--description", DESCRIPTION, env=env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = run_cli("models", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "birefnet-general" in line)
    assert "birefnet" in row and DESCRIPTION in row and str(model_file) in row
    info = run_cli("models", "info", "birefnet-general", env=env)
    assert f"description: {DESCRIPTION}" in info.stdout.splitlines(), info.stdout + info.stderr

    photo = tmp_path / "photo.png"
    sample_image().save(photo)
    # A model named on the command line wins over BGREMOVER_MODEL_PATH's default file.
    isnet = build_family_model(tmp_path / "isnet.onnx", "isnet")
    cut = run_cli(
        "remove", photo, "--model", "birefnet-general", "--format", "mask", "-o", tmp_path / "out",
        env={**env, "BGREMOVER_MODEL_PATH": str(isnet)},
    )  # fmt: skip
    assert cut.returncode == 0, cut.stderr
    with Image.open(tmp_path / "out" / "photo-mask.png") as mask:
        made = np.asarray(mask.convert("L"), np.int16)
    expected = reference_mask(model_file, sample_image(), REFERENCE["birefnet"])
    assert np.abs(made - expected).mean() < 1.0

    refused = run_cli("models", "add", "x", "--family", "u2net", "--file", model_file, env=env)
    assert refused.returncode != 0
    assert "[N, 3, 320, 320]" in refused.stderr

    verified = run_cli("models", "verify", "birefnet-general", env=env)
    assert verified.returncode == 0 and "verified" in verified.stdout, verified.stderr

    unknown = run_cli("watch", tmp_path, "--model", "nope", "-o", tmp_path / "watched", env=env)
    assert unknown.returncode == 2 and "birefnet-general" in unknown.stderr

    removed = run_cli("models", "remove", "birefnet-general", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "birefnet-general" not in run_cli("models", "list", env=env).stdout
    assert model_file.exists()  # remove forgets the model, it does not delete the user's file


def test_each_job_runs_the_model_it_chose_and_a_missing_file_fails_only_its_job(
    tiny_model: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    store = ModelStore(cache / "models")
    birefnet = build_family_model(tmp_path / "birefnet-general.onnx", "birefnet")
    store.catalog.add("birefnet-general", "birefnet", birefnet)
    gone = store.catalog.add("u2net", "u2net", build_family_model(tmp_path / "u2.onnx", "u2net"))
    Path(gone.path).unlink()  # this machine lacks the file (a worker elsewhere might have it)
    photo = tmp_path / "photo.png"
    sample_image().save(photo)
    env = {"BGREMOVER_MODEL_PATH": str(tiny_model), "BGREMOVER_CACHE_DIR": str(cache)}

    def upload(url: str, **form: str) -> httpx.Response:
        files = [("files", ("photo.png", photo.read_bytes(), "image/png"))]
        return httpx.post(f"{url}/api/batches", files=files, data=form, headers=UI, timeout=60)

    with served(tmp_path / "data", env=env) as (url, _):
        offered = {m["name"]: m for m in httpx.get(f"{url}/api/models").json()}
        assert offered["birefnet-general"]["family"] == "birefnet"
        assert offered["isnet-general-use"]["default"] is True
        refused = upload(url, model="nope")
        assert refused.status_code == 422 and "birefnet-general" in refused.text

        chosen = upload(url, model="birefnet-general", format="mask").json()["jobs"][0]
        missing = upload(url, model="u2net").json()["jobs"][0]
        default = upload(url, format="mask").json()["jobs"][0]
        follow(url, job_ended({chosen["id"], missing["id"], default["id"]}))
        after = upload(url, format="mask").json()["jobs"][0]  # the worker still serves
        follow(url, job_ended({after["id"]}))

        def job(j: dict[str, str]) -> dict[str, object]:
            return httpx.get(f"{url}/api/jobs/{j['id']}").json()  # type: ignore[no-any-return]

        assert job(chosen)["status"] == "completed"
        assert job(chosen)["options"] == {"format": "mask", "model": "birefnet-general"}
        made_by = job(chosen)["result"]
        assert isinstance(made_by, dict)
        assert (made_by["model"], made_by["model_sha256"]) == (
            "birefnet-general",
            hashlib.sha256(birefnet.read_bytes()).hexdigest(),
        )
        default_result = job(default)["result"]
        assert isinstance(default_result, dict) and default_result["model"] == "isnet-file"
        result = httpx.get(f"{url}/api/jobs/{chosen['id']}/result", timeout=60)
        with Image.open(io.BytesIO(result.content)) as mask:
            made = np.asarray(mask.convert("L"), np.int16)
        expected = reference_mask(birefnet, sample_image(), REFERENCE["birefnet"])
        assert np.abs(made - expected).mean() < 1.0

        failed = job(missing)
        assert failed["status"] == "failed"
        error = failed["error"]
        assert isinstance(error, dict) and error["code"] == "model_unavailable"
        assert "not on this machine" in error["message"] and "models add u2net" in error["message"]
        assert job(default)["status"] == job(after)["status"] == "completed"


def test_a_worker_keeps_loaded_models_within_its_memory_and_lets_the_oldest_go(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    store = ModelStore(cache / "models")
    for family in ("u2net", "isnet", "bria-rmbg"):
        store.catalog.add(family, family, build_family_model(tmp_path / f"{family}.onnx", family))
    one_model = max(store.resolve(f).session_path.stat().st_size for f in ("u2net", "isnet"))
    settings = Settings(cache_dir=cache, model="u2net", model_memory=2 * one_model)
    removers = Removers(settings)

    first = removers.get(None)  # the default
    assert removers.get("isnet") is not first
    assert removers.loaded() == ["u2net", "isnet"]
    assert removers.get("u2net") is first  # kept, and now the most recently used
    removers.get("bria-rmbg")  # past the budget: the least recently used goes
    assert removers.loaded() == ["u2net", "bria-rmbg"]
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        removers.get("nope")
    assert removers.loaded() == ["u2net", "bria-rmbg"]


def test_a_preset_that_names_a_model_runs_its_jobs_on_it(tiny_model: Path, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", model_path=tiny_model
    )
    u2net = build_family_model(tmp_path / "u2net.onnx", "u2net")
    ModelStore(settings.models_dir).catalog.add("u2net", "u2net", u2net)
    photo = tmp_path / "photo.png"
    sample_image().save(photo)
    with TestClient(create_app(settings), base_url="http://localhost", headers=UI) as client:
        refused = client.post("/api/presets", json={"name": "Other", "model": "u2netp"})
        assert refused.status_code == 422 and "u2net" in refused.json()["error"]["message"]
        saved = client.post("/api/presets", json={"name": "People", "model": "u2net"})
        assert saved.status_code == 201, saved.text
        files = [("files", ("photo.png", photo.read_bytes(), "image/png"))]
        job = client.post("/api/batches", files=files, data={"preset": "People"}).json()["jobs"][0]
        assert job["options"] == {"model": "u2net"}
        done = wait_for_job(client, job["id"], lambda j: j["status"] in ("completed", "failed"))
        assert done["status"] == "completed", done["error"]
        assert done["result"]["model"] == "u2net"


def test_etas_learn_each_chosen_models_time_and_keep_it_in_the_database(
    database_url: str,
) -> None:
    database = connect(database_url)
    migrate(database)
    store = TimingStore(session_factory(database))
    clock = StageClock()
    default_seconds = clock.job_seconds(0)
    model_stage = clock.expected(0, Stage.INFERENCE)

    # A BiRefNet job took 9 s in the model, the rest as the defaults say.
    timings = {stage.value: clock.expected(0, stage) for stage in STAGES}
    timings[Stage.INFERENCE.value] = 9.0
    normalized = clock.observe(0, timings, model="birefnet-general")
    store.observe(0, normalized, model="birefnet-general")

    assert clock.job_seconds(0, model="birefnet-general") == pytest.approx(
        default_seconds - model_stage + 9.0
    )
    assert clock.job_seconds(0) == pytest.approx(default_seconds)  # the default's own time
    assert clock.job_seconds(0, model="u2net") == pytest.approx(default_seconds)  # not yet known
    pending = JobRow(status="pending", size_bucket=0, options={"model": "birefnet-general"})
    assert job_eta(pending, None, clock) == pytest.approx(default_seconds - model_stage + 9.0)

    # Another process (a restart, a second web process) adopts it from the database.
    other = StageClock()
    other.load_models(store.load_models())
    assert other.job_seconds(0, model="birefnet-general") == pytest.approx(
        default_seconds - model_stage + 9.0
    )
    # decaying average, as for the stages
    store.observe(0, {Stage.INFERENCE.value: 3.0}, model="birefnet-general")
    assert store.load_models() == [("birefnet-general", pytest.approx(9.0 + 0.3 * (3.0 - 9.0)), 2)]
    database.dispose()
