#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install the provider with its test tools. Idempotent and quick
# when nothing changed: the install is skipped while pyproject.toml is the one last installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (found $("$PYTHON" --version))." >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-pyproject
if ! cmp -s pyproject.toml "$stamp"; then
  echo "Installing the provider, Airflow and test tools into .venv (a few minutes the first time)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  cp pyproject.toml "$stamp"
fi
