#!/usr/bin/env bash
# The main job: run the example DAG against the local emulator and show the CSV it wrote.
# Installs only what the demo runs (scripts/test.sh adds the test tools to the same .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh demo
exec .venv/bin/python scripts/run_demo.py "$@"
