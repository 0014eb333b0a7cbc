#!/usr/bin/env bash
# Create a venv (Python 3.11+) and install the provider with its test tools, pinned by a
# constraints file (the versions this project was last tested with, as Airflow's own constraint
# files do). Idempotent and quick when nothing changed: skipped while pyproject.toml and the
# constraints file are the ones last installed.
#
#   scripts/bootstrap.sh                 .venv, constraints.txt: the newest Airflow supported (3.3)
#   scripts/bootstrap.sh oldest          .venv-airflow-3.1, constraints-airflow-3.1.txt: the oldest
#
# Refresh a constraints file with `<venv>/bin/pip freeze --exclude-editable > <constraints file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-newest}" in
  newest) venv=.venv constraints=constraints.txt ;;
  oldest) venv=.venv-airflow-3.1 constraints=constraints-airflow-3.1.txt ;;
  *) echo "usage: $0 [newest|oldest]" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (found $("$PYTHON" --version))." >&2; exit 1; }

[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
stamp="$venv/.installed-inputs"
if ! cat pyproject.toml "$constraints" | cmp -s - "$stamp"; then
  echo "Installing the provider, Airflow and test tools into $venv (a few minutes the first time)..." >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -c "$constraints" -e ".[dev]"
  cat pyproject.toml "$constraints" > "$stamp"
fi
