"""Proofs that run on every deployment (LocalExecutor and CeleryExecutor, both on PostgreSQL):
each test module calls them with its own deployment."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT, Emulator, render_report

from tests.e2e.deployment import AirflowDeployment, Row, wait_until

BACKFILL_DAG = "flex_insights_backfill_export"
PARTITIONED_DAG = "flex_insights_partitioned_export"  # example_dags/flex_insights_partitioned_pipeline.py


def backfilled_file(deployment: AirflowDeployment, dag_id: str, day: dt.date) -> Path:
    """Where the backfill DAG's run of ``day`` writes: a file per interval, or a folder per partition."""
    exports = deployment.home / "exports"
    if dag_id == PARTITIONED_DAG:
        return exports / "partitioned" / "queue_report" / f"date={day}" / "queue_report.csv"
    return exports / "backfill" / "queue_report" / f"{day}.csv"


def backfill_seven_days(
    deployment: AirflowDeployment,
    emulator: Emulator,
    *,
    max_active_runs: int | None = None,
    dag_id: str = BACKFILL_DAG,
) -> int:
    """Backfill 2024-03-01..07: seven runs, seven files, each with its own interval's day (or, for
    the partitioned DAG, its partition's: runs keyed ``2024-03-01T00:00:00``..., no logical date).

    Returns the most backfill runs that were running at one moment (at most ``max_active_runs``).
    """
    emulator.config.pending_polls = 0
    deployment.unpause_and_settle(dag_id)
    emulator.clear_requests()

    limit = ["--max-active-runs", str(max_active_runs)] if max_active_runs else []
    deployment.cli(
        "backfill",
        "create",
        "--dag-id",
        dag_id,
        "--from-date",
        "2024-03-01",
        "--to-date",
        "2024-03-07",
        *limit,
        done_if="AlreadyRunningBackfill",  # a retry after a lock that struck once it was created
    )
    backfill_runs = wait_until(
        lambda: (
            (runs := [r for r in deployment.runs(dag_id) if r["run_type"] == "backfill"])
            and len(runs) == 7
            and runs
        ),
        timeout=120,
        what="the backfill to create 7 runs",
    )
    for run in backfill_runs:
        assert deployment.wait_for_run(dag_id, run["run_id"], timeout=300) == "success"

    days = [dt.date(2024, 3, 1) + dt.timedelta(days=n) for n in range(7)]  # each run: its interval's day
    received = sorted(
        (f["constraint"]["from"], f["constraint"]["to"])
        for r in emulator.requests
        if r.endpoint == "execute"
        for f in r.body["report_req"]["context"]["filters"]
    )
    assert received == [(d.isoformat(), d.isoformat()) for d in days]
    for day in days:
        expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, day.isoformat(), day.isoformat())
        assert backfilled_file(deployment, dag_id, day).read_bytes() == expected
    if dag_id == PARTITIONED_DAG:
        keys = deployment.query(
            "SELECT partition_key, logical_date FROM dag_run WHERE dag_id = ? AND run_type = 'backfill'",
            dag_id,
        )
        assert sorted((r["partition_key"], r["logical_date"]) for r in keys) == [
            (f"{d}T00:00:00", None) for d in days
        ]
    peak = most_backfill_runs_at_once(deployment, dag_id)
    if max_active_runs:
        assert peak <= max_active_runs
    return peak


def most_backfill_runs_at_once(deployment: AirflowDeployment, dag_id: str = BACKFILL_DAG) -> int:
    """The most backfill runs running at one moment: at each run's start, the runs begun and not ended."""
    rows = deployment.query(
        "SELECT max(running) AS peak FROM (SELECT (SELECT count(*) FROM dag_run other"
        " WHERE other.dag_id = run.dag_id AND other.run_type = 'backfill'"
        " AND other.start_date <= run.start_date AND other.end_date > run.start_date) AS running"
        " FROM dag_run run WHERE run.dag_id = ? AND run.run_type = 'backfill') AS starts",
        dag_id,
    )
    return int(rows[0]["peak"])


def asset_pipeline(deployment: AirflowDeployment, emulator: Emulator) -> None:
    """A fresh export schedules the asset consumer, which reads the very file the producer wrote."""
    producer, consumer = "flex_insights_asset_producer", "flex_insights_asset_consumer"
    # An export ready within seconds of deferring can hit Airflow 3.3's stale-executor-event race
    # (apache/airflow#72716), see tests/e2e/test_operations.py: real exports take longer; so do these.
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 10
    deployment.wait_for_dag(consumer)
    deployment.cli("dags", "unpause", consumer)

    deployment.unpause_and_settle(producer, timeout=300)  # runs the latest daily export
    consumer_runs = wait_until(
        lambda: (runs := deployment.runs(consumer)) and all(r["state"] == "success" for r in runs) and runs,
        timeout=180,
        what="the asset-scheduled consumer to run",
    )

    exported = [json.loads(row["value"]) for row in xcom_values(deployment, producer)]
    summarized = [line for row in xcom_values(deployment, consumer) for line in json.loads(row["value"])]
    assert len(exported) >= 1 and len(consumer_runs) >= 1
    assert {run_type for run_type in (r["run_type"] for r in consumer_runs)} == {"asset_triggered"}
    assert sorted((s["date_from"], s["rows"]) for s in summarized) == sorted(
        (e["date_from"], Path(e["path"]).read_bytes().count(b"\r\n") - 1) for e in exported
    )


def xcom_values(deployment: AirflowDeployment, dag_id: str) -> list[Row]:
    return deployment.query("SELECT value FROM xcom WHERE dag_id = ? AND key = 'return_value'", dag_id)
