#!/usr/bin/env bash
# The main job: run the example DAG against the local emulator and show the CSV it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python scripts/run_demo.py "$@"
