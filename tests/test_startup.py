"""Start-up: commands load only what they use; the model's hash is checked once per change."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# (Not pydantic: Typer itself imports it to parse a subcommand's options.)
HEAVY = ("onnxruntime", "onnx", "sqlalchemy", "alembic", "fastapi", "uvicorn", "numpy", "PIL")


def test_help_loads_no_model_runtime_database_or_web_stack() -> None:
    # A fresh interpreter, as `bgremover --help` starts: the CLI module and every subcommand's
    # help, then which of the heavy libraries got imported.
    script = f"""
import json, sys
from bgremover.cli import app
for args in (["--help"], ["remove", "--help"], ["serve", "--help"], ["models", "--help"]):
    try:
        app(args, prog_name="bgremover")
    except SystemExit:
        pass
heavy = {HEAVY!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))), file=sys.stderr)
"""
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Remove the background" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []
