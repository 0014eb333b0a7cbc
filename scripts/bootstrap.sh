#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the provider with its test tools, pinned by
# constraints.txt (the versions this project was last tested with, as Airflow's own constraint
# files do; refresh it with `.venv/bin/pip freeze --exclude-editable > constraints.txt`).
# Idempotent and quick when nothing changed: skipped while pyproject.toml and constraints.txt
# are the ones last installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (found $("$PYTHON" --version))." >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-inputs
if ! cat pyproject.toml constraints.txt | cmp -s - "$stamp"; then
  echo "Installing the provider, Airflow and test tools into .venv (a few minutes the first time)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
  cat pyproject.toml constraints.txt > "$stamp"
fi
