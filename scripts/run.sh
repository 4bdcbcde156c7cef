#!/usr/bin/env bash
# Run BG Remover: set up on first use, then remove the backgrounds of the sample photos.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/bgremover" remove "$root/samples" -o "$root/out" --overwrite "$@"
