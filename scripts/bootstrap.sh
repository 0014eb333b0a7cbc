#!/usr/bin/env bash
# Create a venv (Python 3.11+) and install the provider, pinned by a constraints file (the versions
# this project was last tested with, as Airflow's own constraint files do). Idempotent and quick
# when nothing changed: skipped while pyproject.toml, the constraints file and the extras are the
# ones last installed (a venv with the test tools also serves the demo).
#
#   scripts/bootstrap.sh demo            .venv, constraints.txt, only what the demo runs (.[demo])
#   scripts/bootstrap.sh                 .venv, constraints.txt: Airflow 3.3 with the test tools (.[dev])
#   scripts/bootstrap.sh oldest          .venv-airflow-3.1, constraints-airflow-3.1.txt: the oldest
#
# Refresh a constraints file with `<venv>/bin/pip freeze --exclude-editable > <constraints file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-newest}" in
  demo) venv=.venv constraints=constraints.txt extras=demo ;;
  newest) venv=.venv constraints=constraints.txt extras=dev ;;
  oldest) venv=.venv-airflow-3.1 constraints=constraints-airflow-3.1.txt extras=dev ;;
  *) echo "usage: $0 [demo|newest|oldest]" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (found $("$PYTHON" --version))." >&2; exit 1; }

installed() { printf 'extras=%s\n' "$1" | cat - pyproject.toml "$constraints" | cmp -s - "$venv/.installed-inputs"; }
if installed "$extras" || { [ "$extras" = demo ] && installed dev; }; then
  exit 0
fi
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
echo "Installing the provider and Airflow ($extras) into $venv (about a minute the first time)..." >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$constraints" -e ".[$extras]"
printf 'extras=%s\n' "$extras" | cat - pyproject.toml "$constraints" > "$venv/.installed-inputs"
