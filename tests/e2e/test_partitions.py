"""Partitions on a real scheduler and triggerer (example_dags/flex_insights_partitioned_pipeline.py):
the daily partitioned export hands each day to the partitioned load through its asset; a backfill of
seven partitions exports and loads each day once; a re-run of one partition replaces that day only.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT, Emulator, render_report

from tests.conftest import AIRFLOW_VERSION
from tests.e2e.deployment import AirflowDeployment, PostgresDatabase, Row, wait_until
from tests.e2e.scenarios import PARTITIONED_DAG, backfilled_file, most_backfill_runs_at_once

pytestmark = pytest.mark.skipif(AIRFLOW_VERSION < (3, 2), reason="Airflow < 3.2 has no partitions.")

EXPORT, LOAD = PARTITIONED_DAG, "flex_insights_partitioned_load"
ASSET, TABLE = "flex_insights_queue_report_days", "queue_stats_daily"
DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=n) for n in range(7)]


def key(day: dt.date) -> str:
    return f"{day}T00:00:00"  # CronPartitionTimetable's key of a daily partition


def runs_by_key(deployment: AirflowDeployment, dag_id: str) -> dict[str, list[Row]]:
    rows = deployment.query(
        "SELECT run_id, run_type, state, partition_key, logical_date FROM dag_run"
        " WHERE dag_id = ? ORDER BY id",
        dag_id,
    )
    found: dict[str, list[Row]] = {}
    for row in rows:
        found.setdefault(row["partition_key"], []).append(row)
    return found


def wait_for_loads(deployment: AirflowDeployment, keys: dict[str, int], *, timeout: float = 300) -> None:
    """Until the load DAG has, for each key, that many runs, all successful."""

    def done() -> bool:
        runs = runs_by_key(deployment, LOAD)
        failed = [r for rows in runs.values() for r in rows if r["state"] == "failed"]
        assert not failed, f"load runs failed: {failed}"
        return all(
            len(runs.get(k, [])) == n and all(r["state"] == "success" for r in runs[k])
            for k, n in keys.items()
        )

    wait_until(done, timeout=timeout, what=f"the load runs of {sorted(keys)}")


def exported_days(emulator: Emulator) -> Counter[str]:
    """How many exports were started for each day (the export's and the load's alike)."""
    return Counter(
        f"{f['constraint']['from']}..{f['constraint']['to']}"
        for filters in emulator.received_filters()
        for f in filters
    )


def table(warehouse: PostgresDatabase) -> dict[str, tuple[int, list[str]]]:
    """Day -> (rows, the transaction ids that wrote them): a day loaded again gets new ones."""
    rows = warehouse.query(
        "SELECT date::text AS day, count(*) AS n, array_agg(DISTINCT xmin::text) AS xmins"
        f" FROM {TABLE} GROUP BY date"
    )
    return {r["day"]: (int(r["n"]), sorted(r["xmins"])) for r in rows}


def export_events(deployment: AirflowDeployment) -> list[tuple[str, dict[str, Any]]]:
    rows = deployment.query(
        "SELECT e.partition_key, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id"
        " WHERE a.name = ? ORDER BY e.id",
        ASSET,
    )
    return [(r["partition_key"], json.loads(r["extra"])) for r in rows]


def rows_of(day: str) -> int:
    return render_report(DEMO_WORKSPACE, QUEUE_REPORT, day, day).count(b"\r\n") - 1


def test_partitioned_exports_feed_the_partitioned_load_each_day_once(
    deployment: AirflowDeployment, emulator: Emulator, warehouse: PostgresDatabase
) -> None:
    started = time.monotonic()
    # 1. The scheduled run (the key of yesterday, run_offset=-1) waits in the real triggerer, and so
    # does the load its event schedules. Ready after 10 s: see the race noted in scenarios.py.
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 10
    deployment.wait_for_dag(LOAD)
    deployment.cli("dags", "unpause", LOAD)
    deployment.unpause_and_settle(EXPORT, timeout=300)
    (scheduled,) = [r for rows in runs_by_key(deployment, EXPORT).values() for r in rows]
    yesterday = dt.date.fromisoformat(scheduled["partition_key"][:10])
    wait_for_loads(deployment, {key(yesterday): 1})

    assert (scheduled["state"], scheduled["partition_key"], scheduled["logical_date"]) == (
        "success",
        key(yesterday),
        None,
    )
    assert exported_days(emulator) == Counter({f"{yesterday}..{yesterday}": 2})  # the export's, the load's
    assert any(r.endpoint == "export" and r.user_agent.endswith("(aiohttp)") for r in emulator.requests)
    assert backfilled_file(deployment, EXPORT, yesterday).read_bytes() == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, str(yesterday), str(yesterday)
    )
    ((event_key, extra),) = export_events(deployment)
    assert event_key == extra["partition_key"] == key(yesterday)
    assert (extra["date_from"], extra["date_to"]) == (str(yesterday), str(yesterday))
    scheduled_at = time.monotonic()

    # 2. A backfill of seven partitions, three at a time: seven exports, seven loads, each day once.
    emulator.config.pending_seconds = 0
    emulator.clear_requests()
    deployment.cli(
        "backfill",
        "create",
        "--dag-id",
        EXPORT,
        "--from-date",
        str(DAYS[0]),
        "--to-date",
        str(DAYS[-1]),
        "--max-active-runs",
        "3",
        done_if="AlreadyRunningBackfill",
    )
    wait_until(
        lambda: len([r for r in deployment.runs(EXPORT) if r["run_type"] == "backfill"]) == 7,
        timeout=120,
        what="the backfill to create 7 runs",
    )
    for run in [r for r in deployment.runs(EXPORT) if r["run_type"] == "backfill"]:
        assert deployment.wait_for_run(EXPORT, run["run_id"], timeout=300) == "success"
    wait_for_loads(deployment, {key(d): 1 for d in DAYS})
    loaded = table(warehouse)
    backfilled_at = time.monotonic()

    assert exported_days(emulator) == Counter({f"{d}..{d}": 2 for d in DAYS})
    for day in DAYS:
        expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, str(day), str(day))
        assert backfilled_file(deployment, EXPORT, day).read_bytes() == expected
    assert {d: n for d, (n, _) in loaded.items()} == {
        str(d): rows_of(str(d)) for d in [yesterday, *DAYS]
    }  # each day once, yesterday's untouched
    events = export_events(deployment)[1:]
    assert sorted(k for k, _ in events) == [key(d) for d in DAYS]
    assert all(extra["partition_key"] == k and extra["date_from"] == k[:10] for k, extra in events)
    peak = most_backfill_runs_at_once(deployment, EXPORT)
    assert 1 <= peak <= 3

    # 3. A re-run of one partition replaces that day, downstream too, and no other day.
    rerun = DAYS[2]
    emulator.clear_requests()
    deployment.cli("dags", "clear", EXPORT, "--partition-key", key(rerun), "--yes")
    wait_for_loads(deployment, {key(rerun): 2})  # the second event for the key: a second load run
    after = table(warehouse)

    assert exported_days(emulator) == Counter({f"{rerun}..{rerun}": 2})
    assert after[str(rerun)][0] == loaded[str(rerun)][0] and after[str(rerun)][1] != loaded[str(rerun)][1]
    assert {d: v for d, v in after.items() if d != str(rerun)} == {
        d: v for d, v in loaded.items() if d != str(rerun)
    }
    print(
        "measured:",
        f"scheduled_s={scheduled_at - started:.0f}",
        f"backfill_s={backfilled_at - scheduled_at:.0f}",
        f"rerun_s={time.monotonic() - backfilled_at:.0f}",
        f"backfill_peak_runs={peak}",
    )
