#!/usr/bin/env bash
# The test command: lint, format check, type check, then the test suite (emulator + real Airflow).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/install-browser.sh  # Chromium for tests/e2e/test_connection_form.py
.venv/bin/ruff check src tests example_dags scripts benchmarks
.venv/bin/ruff format --check src tests example_dags scripts benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
