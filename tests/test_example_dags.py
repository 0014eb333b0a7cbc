"""The example DAGs users copy: they import cleanly and the daily export works as documented."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_WORKSPACE,
    QUEUE_LABEL,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    render_report,
)

from tests.conftest import AIRFLOW_VERSION, REPO_ROOT, DagRunResult, dag_bag, run_dag_file

EXAMPLES = sorted((REPO_ROOT / "example_dags").glob("*.py"))
PARTITIONED = {"flex_insights_partitioned_pipeline.py", "flex_insights_partitioned_backfill.py"}


def run_example(airflow_db: Path, dag_id: str, logical_date: str) -> DagRunResult:
    """Run an example DAG (its file is named after its dag_id) from Airflow's DAG folder."""
    dag_file = airflow_db / "dags" / f"{dag_id}.py"
    shutil.copy(REPO_ROOT / "example_dags" / f"{dag_id}.py", dag_file)
    try:
        return run_dag_file(dag_file, dag_id, logical_date)
    finally:
        dag_file.unlink()


def test_every_example_dag_imports_without_errors() -> None:
    bag = dag_bag(REPO_ROOT / "example_dags")
    unsupported = set() if AIRFLOW_VERSION >= (3, 2) else PARTITIONED  # no partitions before 3.2

    assert {Path(path).name for path in bag.import_errors} == unsupported
    assert {Path(dag.fileloc).name for dag in bag.dags.values()} == {p.name for p in EXAMPLES} - unsupported
    assert "flex_insights_daily_export" in bag.dag_ids


def test_daily_export_writes_the_previous_complete_day(
    airflow_db: Path,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_FLEX_INSIGHTS_EXPORT_DIR", str(tmp_path))
    run = run_example(airflow_db, "flex_insights_daily_export", "2024-03-02")

    csv = tmp_path / "queue_report" / "2024-03-01.csv"
    assert run.task_state == "success"
    assert csv.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
    assert run.result is not None and run.result["path"] == str(csv)
    assert any("(aiohttp)" in r.user_agent for r in emulator.requests)  # it deferred: the trigger polled


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(today=dt.date(2024, 3, 11))])
def test_filtered_example_exports_one_queue_for_the_previous_seven_days(
    airflow_db: Path,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_FLEX_INSIGHTS_EXPORT_DIR", str(tmp_path))
    run = run_example(airflow_db, "flex_insights_filtered_export", "2024-03-11")

    csv = tmp_path / "queue_last_week" / "Support" / "2024-03-11.csv"
    queue = emulator.label(QUEUE_LABEL)
    assert run.task_state == "success"
    assert emulator.received_filters() == [
        [
            {"uri": emulator.date_label_uri(), "constraint": {"type": "floating", "from": -7, "to": -1}},
            {
                "uri": queue.uri(DEMO_WORKSPACE),
                "constraint": {"type": "list", "elements": [queue.element_uri(DEMO_WORKSPACE, "Support")]},
            },
        ]
    ]
    # Monday 2024-03-11: the previous Monday..Sunday, Support rows only
    expected = render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-04", "2024-03-10", where={"Queue": {"Support"}}
    )
    assert csv.read_bytes() == expected
    assert {line.split(b'","')[0] for line in expected.splitlines()[1:]} == {b'"Support'}


def test_backfill_load_example_loads_the_days_of_its_runs_once(
    airflow_db: Path, flex_connection: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import sqlite3

    database = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    runs = [
        run_example(airflow_db, "flex_insights_backfill_load", day) for day in ("2024-02-01", "2024-02-02")
    ]
    again = run_example(airflow_db, "flex_insights_backfill_load", "2024-02-01")

    assert [run.task_state for run in [*runs, again]] == ["success"] * 3
    with sqlite3.connect(database) as db:
        per_day = db.execute("SELECT date, COUNT(*) FROM queue_stats GROUP BY date ORDER BY date").fetchall()
    expected = [
        (day, render_report(DEMO_WORKSPACE, QUEUE_REPORT, day, day).count(b"\r\n") - 1)
        for day in ("2024-02-01", "2024-02-02")
    ]
    assert per_day == expected
