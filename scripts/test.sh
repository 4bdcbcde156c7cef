#!/usr/bin/env bash
# Run the whole test suite: set up on first use (dev extras, model), then lint and test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" dev
cd "$root"
# The browser tests drive Debian's chromium (Playwright cannot download its own browser here).
if [ ! -x "${BGREMOVER_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "Installing Debian's chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# The arrows between packages (pyproject's [tool.importlinter]), read from this checkout's src.
PYTHONPATH="$root/src" .venv/bin/lint-imports --no-cache
# Two test processes: a run spends about a third of its time waiting on servers, workers and
# browsers, which the other process fills (BGREMOVER_TEST_PROCESSES=0 runs in this one alone).
# worksteal hands a process's queued tests to the other when it runs dry, so one slow file
# does not keep the run going alone at its end.
exec .venv/bin/python -m pytest -n "${BGREMOVER_TEST_PROCESSES:-2}" --dist worksteal "$@"
