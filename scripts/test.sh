#!/usr/bin/env bash
# The test command: lint, format check, type check, then the test suite (emulator + real Airflow)
# on the newest supported Airflow (3.3), then again on the oldest (3.1) without the deployment
# tests (tests/e2e: browser, scheduler, triggerer) and the benchmark smoke runs.
#
#   scripts/test.sh                      both Airflow versions, the whole suite
#   scripts/test.sh [pytest args]        both Airflow versions, only what the arguments select
#   AIRFLOW_VERSIONS=newest scripts/test.sh [pytest args]    3.3 only, for a quicker local loop
#
# Most tests wait on one thing at a time (an emulator, dag.test(), a subprocess), so they run in
# two pytest-xdist workers (FLEX_INSIGHTS_TEST_WORKERS, default 2). The deployment tests
# (tests/e2e) run alone after them: they measure adoption delays and retries of a whole Airflow
# deployment, which a busy machine would only blur.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/install-system-packages.sh  # chromium, postgresql, redis-server, curl: what the tests run for real
both_versions=$([ "${AIRFLOW_VERSIONS:-both}" = newest ] || echo yes)
if [ -n "$both_versions" ]; then
  # Airflow 3.1's venv installs meanwhile (mostly downloads); its output goes to a log on failure.
  scripts/bootstrap.sh oldest > .bootstrap-oldest.log 2>&1 &
  oldest_bootstrap=$!
fi
.venv/bin/ruff check src tests example_dags scripts benchmarks
.venv/bin/ruff format --check src tests example_dags scripts benchmarks
.venv/bin/mypy

# The whole suite in parallel workers; a selection (arguments) as it is, in one process.
selection=("$@")
[ $# -eq 0 ] && selection=(-n "${FLEX_INSIGHTS_TEST_WORKERS:-2}")
echo "=== Airflow $(.venv/bin/python -c 'from importlib.metadata import version; print(version("apache-airflow-core"))') ===" >&2
if [ $# -eq 0 ]; then
  .venv/bin/python -m pytest "${selection[@]}" --ignore=tests/e2e
  .venv/bin/python -m pytest tests/e2e
else
  .venv/bin/python -m pytest "$@"
fi

if [ -n "$both_versions" ]; then
  wait "$oldest_bootstrap" || { cat .bootstrap-oldest.log >&2; exit 1; }
  echo "=== Airflow $(.venv-airflow-3.1/bin/python -c 'from importlib.metadata import version; print(version("apache-airflow-core"))') ===" >&2
  # The 40-second wait test checks the poll schedule, the same code on every Airflow: once is enough.
  .venv-airflow-3.1/bin/python -m pytest --ignore=tests/e2e --ignore=tests/test_benchmarks.py \
    --deselect "tests/test_operator.py::test_an_export_pending_for_40_seconds_is_waited_out_by_the_trigger_in_few_polls" \
    -p no:cacheprovider "${selection[@]}"
fi
