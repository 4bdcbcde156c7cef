#!/usr/bin/env bash
# Run BG Remover: set up on first use, then serve the web app on http://127.0.0.1:8000/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/bgremover" serve "$@"
