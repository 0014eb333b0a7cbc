"""Partitioned runs (Airflow 3.2+): the partition key is the date filter, the events name it, the
loader replaces exactly its days, files land in a folder per partition; runs without one unchanged.

``dag.test()`` of Airflow 3.3.2 takes no partition key (only ``logical_date``, ``run_after``,
``run_conf``...). :func:`run_partition` makes the run the way the scheduler and the REST API do,
``create_dagrun(..., partition_key=KEY)`` with no logical date and no data interval, by wrapping the
one function ``dag.test()`` creates its run with; everything after that (the task process, the
inline trigger, XCom, asset events) is ``dag.test()``'s own. tests/e2e/test_partitions.py covers
the rest on a real scheduler: backfills, and the downstream run per partition.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    render_report,
)
from airflow_provider_flexinsights.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.validation import PartitionDays, partition_days

from tests.conftest import (
    AIRFLOW_VERSION,
    REPO_ROOT,
    DagRunResult,
    dag_bag,
    requires_task_state_store,
    run_dag_file,
)
from tests.postgres_server import PostgresServer
from tests.test_warehouse import PG_CONN, csv_rows, pg_database, query

__all__ = ["pg_database"]  # a fixture, used by name

requires_partitions = pytest.mark.skipif(
    AIRFLOW_VERSION < (3, 2), reason="Airflow < 3.2 has no partitioned runs: nothing changes there."
)
DAILY = 'CronPartitionTimetable("0 0 * * *", timezone="UTC")'
FAST = {"poll_interval": 0.05, "max_poll_interval": 0.2}

_DAG_FILE = """\
import pendulum
from airflow.sdk import DAG, Asset
from airflow.timetables.interval import CronDataIntervalTimetable
{partition_imports}
from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator
from airflow_provider_flexinsights.transfers.flex_insights_to_sql import FlexInsightsToSqlOperator

with DAG({dag_id!r}, schedule={schedule}, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    {operator}(task_id="task", outlets=[Asset({asset!r})], **{kwargs})
"""


# --- the keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "grain", "days", "folder"),
    [
        ("2024-03-01T00:00:00", "day", ("2024-03-01", "2024-03-01"), "date=2024-03-01"),
        ("2024-02-29", "day", ("2024-02-29", "2024-02-29"), "date=2024-02-29"),
        ("2024-03-11 (W11)", "week", ("2024-03-11", "2024-03-17"), "week=2024-03-11"),
        ("2024-02", "month", ("2024-02-01", "2024-02-29"), "month=2024-02"),
        ("2023-12", "month", ("2023-12-01", "2023-12-31"), "month=2023-12"),
    ],
)
def test_a_partition_key_is_its_days(key: str, grain: str, days: tuple[str, str], folder: str) -> None:
    partition = partition_days(key)

    assert (partition.grain, (partition.date_from, partition.date_to), partition.folder) == (
        grain,
        days,
        folder,
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("us", "Partition key 'us' names no day, ISO week or month to export"),
        ("us|2024-03-01T00:00:00", "Partition key 'us|2024-03-01T00:00:00' names no day"),
        ("2024-02-30", "Partition key '2024-02-30' names no day"),
        ("2024-13", "Partition key '2024-13' names no day"),
        ("2024-03-12 (W11)", "Partition key '2024-03-12 (W11)' names no day"),  # a Tuesday
        ("2024-03-01T05:00:00", "Partition key '2024-03-01T05:00:00' is not a whole day"),
        ("2024-Q1", "Partition key '2024-Q1' names no day"),
    ],
)
def test_any_other_key_is_refused_in_one_sentence(key: str, message: str) -> None:
    with pytest.raises(FlexInsightsInputError) as refused:
        partition_days(key)

    text = str(refused.value)
    assert text.startswith(message)
    assert text.endswith(".") and text.count(". ") == 0  # one sentence


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/data/queue.csv", "/data/date=2024-03-01/queue.csv"),
        ("s3://aws@bucket/flex/queue.parquet", "s3://aws@bucket/flex/date=2024-03-01/queue.parquet"),
        ("queue.csv", "date=2024-03-01/queue.csv"),
        ("/data/2024-03-01.csv", "/data/2024-03-01.csv"),  # names the day already
        ("/data/2024-03-01T00:00:00/queue.csv", "/data/2024-03-01T00:00:00/queue.csv"),
        ("/data/2023-12-31.csv", "/data/date=2024-03-01/2023-12-31.csv"),  # another day: no overwrite
    ],
)
def test_a_destination_not_naming_the_partition_gets_its_folder(destination: str, expected: str) -> None:
    assert partition_days("2024-03-01T00:00:00").path_for(destination) == expected


def test_a_month_folder_is_named_by_the_month() -> None:
    month = PartitionDays("2024-02", "month", "2024-02-01", "2024-02-29")

    assert month.path_for("/data/q.csv") == "/data/month=2024-02/q.csv"
    assert month.path_for("/data/2024-02/q.csv") == "/data/2024-02/q.csv"


@pytest.mark.parametrize("name", ["date=2024-03-01", "a b", "50%25"])
def test_a_local_folder_is_written_under_its_own_name_not_percent_encoded(tmp_path: Path, name: str) -> None:
    from airflow_provider_flexinsights.storage import write_atomically

    written = write_atomically(str(tmp_path / name / "q.csv"), iter([b"a,b\r\n"]))

    assert written.path == str(tmp_path / name / "q.csv")
    assert [p.name for p in tmp_path.iterdir()] == [name]


# --- through real Airflow ------------------------------------------------------------------------


def partition_date(key: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(key).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def run_partition(path: Path, dag_id: str, key: str | None) -> tuple[DagRunResult, Any]:
    """``dag.test()`` of one run with partition key ``key`` (see the module docstring); returns the
    result and the run's ``partition_key`` as stored."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    def create_with_key(*, dag: Any, logical_date: Any, data_interval: Any, **run: Any) -> Any:
        return dag.create_dagrun(
            **run,
            logical_date=None,  # a partitioned run has no logical date and no data interval
            data_interval=None,
            run_type=DagRunType.MANUAL,
            state=DagRunState.RUNNING,
            partition_key=key,
            partition_date=partition_date(key) if key else None,
        )

    dag = dag_bag(path).get_dag(dag_id)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dagrun_module, "get_or_create_dagrun", create_with_key)
        dag_run = dag.test(logical_date=None)
    (task_instance,) = dag_run.get_task_instances()
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=dag_run.run_id, key="return_value")
            .first()
        )
    result = DagRunResult(str(dag_run.state), str(task_instance.state), row and row.value, dag_id)
    return result, dag_run.partition_key


def asset_events(asset_name: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(partition_key, extra) of every event of the asset, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetModel.name == asset_name)
            .order_by(AssetEvent.id)
            .all()
        )
        return [(getattr(event, "partition_key", None), dict(event.extra)) for event in events]  # 3.1: none


class Dag:
    """One test DAG file: a single task of ``operator`` with outlet asset ``asset``."""

    def __init__(self, folder: Path, operator: str, schedule: str, **kwargs: Any) -> None:
        self.dag_id = f"test_partition_{uuid.uuid4().hex[:10]}"
        self.asset = f"asset_{self.dag_id}"
        self.path = folder / f"{self.dag_id}.py"
        imports = (
            "from airflow.sdk import CronPartitionTimetable, PartitionedAtRuntime"
            if "Partition" in schedule
            else ""
        )
        source = _DAG_FILE.format(
            dag_id=self.dag_id,
            schedule=schedule,
            operator=operator,
            asset=self.asset,
            kwargs=repr(kwargs),
            partition_imports=imports,
        )
        self.path.write_text(textwrap.dedent(source))


@pytest.fixture
def partitioned(
    airflow_db: Path, flex_connection: str
) -> Iterator[Callable[..., tuple[Dag, Callable[[str | None], DagRunResult]]]]:
    """Write a DAG; get it and a function running it with a partition key (or none)."""
    written: list[Path] = []

    def make(
        operator: str = "FlexInsightsExportOperator", schedule: str = DAILY, **kwargs: Any
    ) -> tuple[Dag, Callable[[str | None], DagRunResult]]:
        dag = Dag(airflow_db / "dags", operator, schedule, **kwargs)
        written.append(dag.path)

        def run(key: str | None) -> DagRunResult:
            result, stored_key = run_partition(dag.path, dag.dag_id, key)
            assert stored_key == key
            return result

        return dag, run

    yield make
    for path in written:
        path.unlink(missing_ok=True)


def interval_filters(emulator: Emulator) -> list[tuple[str, str]]:
    """The (from, to) of each export's date filter, in order."""
    return [
        (f["constraint"]["from"], f["constraint"]["to"])
        for filters in emulator.received_filters()
        for f in filters
        if f["constraint"].get("type") == "interval"
    ]


@requires_partitions
def test_a_partitioned_run_exports_its_day_into_its_folder_and_its_event_names_it(
    partitioned: Callable[..., Any], emulator: Emulator, tmp_path: Path
) -> None:
    dag, run = partitioned(
        report_id=QUEUE_REPORT, destination=str(tmp_path / "queue.csv"), deferrable=True, **FAST
    )

    outcome = run("2024-03-01T00:00:00")

    written = tmp_path / "date=2024-03-01" / "queue.csv"
    assert outcome.task_state == "success"
    assert interval_filters(emulator) == [("2024-03-01", "2024-03-01")]
    assert any(r.user_agent.endswith("(aiohttp)") for r in emulator.requests)  # it deferred, and resumed
    assert written.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
    assert outcome.result["partition_key"] == "2024-03-01T00:00:00"
    assert (outcome.result["path"], outcome.result["date_from"], outcome.result["date_to"]) == (
        str(written),
        "2024-03-01",
        "2024-03-01",
    )
    ((event_key, extra),) = asset_events(dag.asset)
    assert event_key == "2024-03-01T00:00:00"
    assert extra == outcome.result


@requires_partitions
def test_a_monthly_partition_exports_the_months_days(
    partitioned: Callable[..., Any], emulator: Emulator, tmp_path: Path
) -> None:
    schedule = 'CronPartitionTimetable("0 0 1 * *", timezone="UTC", key_format="%Y-%m")'
    _, run = partitioned(
        schedule=schedule, report_id=QUEUE_REPORT, destination=str(tmp_path / "q.csv"), **FAST
    )

    outcome = run("2024-02")

    assert outcome.task_state == "success"
    assert interval_filters(emulator) == [("2024-02-01", "2024-02-29")]
    assert (tmp_path / "month=2024-02" / "q.csv").read_bytes() == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-02-01", "2024-02-29"
    )


@requires_partitions
def test_explicit_dates_win_over_the_partition(
    partitioned: Callable[..., Any], emulator: Emulator, tmp_path: Path
) -> None:
    destination = tmp_path / "{{ partition_key[:10] }}.csv"
    _, run = partitioned(
        report_id=QUEUE_REPORT,
        date_from="2024-02-01",
        date_to="2024-02-02",
        destination=str(destination),
        **FAST,
    )

    outcome = run("2024-03-01T00:00:00")

    assert outcome.task_state == "success"
    assert interval_filters(emulator) == [("2024-02-01", "2024-02-02")]
    assert outcome.result["path"] == str(tmp_path / "2024-03-01.csv")  # as the template said
    assert outcome.result["partition_key"] == "2024-03-01T00:00:00"


@requires_partitions
@pytest.mark.parametrize(
    ("schedule", "key", "sentence"),
    [
        (
            "PartitionedAtRuntime()",
            "us",
            "Partition key 'us' names no day, ISO week or month to export: partition by day ('2024-03-01', "
            "or CronPartitionTimetable's '2024-03-01T00:00:00'), week ('2024-03-11 (W11)') or month "
            "('2024-03'), or set date_from and date_to.",
        ),
        (
            'CronPartitionTimetable("0 * * * *", timezone="UTC")',
            "2024-03-01T05:00:00",
            "Partition key '2024-03-01T05:00:00' is not a whole day (Flex Insights exports whole days): for "
            "a daily CronPartitionTimetable at another hour set key_format='%Y-%m-%d', or set date_from "
            "and date_to.",
        ),
    ],
    ids=["region", "hour"],
)
def test_a_key_that_is_no_day_fails_in_one_sentence_before_any_request(
    partitioned: Callable[..., Any],
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    schedule: str,
    key: str,
    sentence: str,
) -> None:
    dag, run = partitioned(
        schedule=schedule, report_id=QUEUE_REPORT, destination=str(tmp_path / "q.csv"), retries=2
    )

    outcome = run(key)

    assert outcome.task_state == "failed"  # at once: a retry cannot fix the key
    assert sentence in capfd.readouterr().out
    assert emulator.requests == []
    assert list(tmp_path.iterdir()) == []
    assert asset_events(dag.asset) == []


def test_a_run_without_a_partition_is_unchanged(
    partitioned: Callable[..., Any], emulator: Emulator, tmp_path: Path
) -> None:
    """A DAG with a data-interval schedule, no dates: the interval's day, the destination as given,
    no partition in the result or the event (Airflow 3.1 runs this too)."""
    schedule = 'CronDataIntervalTimetable("0 0 * * *", timezone="UTC")'
    dag, _ = partitioned(
        schedule=schedule, report_id=QUEUE_REPORT, destination=str(tmp_path / "q.csv"), **FAST
    )

    outcome = run_dag_file(dag.path, dag.dag_id, "2024-03-02")

    assert outcome.task_state == "success"
    assert interval_filters(emulator) == [("2024-03-01", "2024-03-01")]
    assert outcome.result["path"] == str(tmp_path / "q.csv")
    assert "partition_key" not in outcome.result
    assert [key for key, _ in asset_events(dag.asset)] == [None]


@requires_partitions
@requires_task_state_store
@pytest.mark.parametrize(
    "emulator_config",
    [EmulatorConfig(pending_polls=1, faults=[Fault("export", "reset", after_bytes=20_000, count=3)])],
)
def test_a_retry_of_a_partitioned_run_reuses_its_export(
    partitioned: Callable[..., Any], emulator: Emulator, tmp_path: Path
) -> None:
    _, run = partitioned(
        report_id=QUEUE_REPORT,
        destination=str(tmp_path / "q.csv"),
        deferrable=False,
        retries=1,
        retry_delay=0,  # the first try's three downloads all break; the retry's succeeds
        **FAST,
    )

    outcome = run("2024-03-01T00:00:00")

    assert outcome.task_state == "success"
    assert [status for endpoint, status in emulator.calls() if endpoint == "execute"] == [201]
    assert (tmp_path / "date=2024-03-01" / "q.csv").read_bytes() == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01"
    )


# --- the loader ----------------------------------------------------------------------------------


def per_day() -> dict[str, int]:
    return {
        str(day): count
        for day, count in query(PG_CONN, "SELECT date, count(*) FROM queue_stats GROUP BY date")
    }


@requires_partitions
def test_a_partitioned_load_replaces_exactly_its_day(
    partitioned: Callable[..., Any], emulator: Emulator, pg_database: PostgresServer
) -> None:
    dag, run = partitioned(
        "FlexInsightsToSqlOperator", report_id=QUEUE_REPORT, sql_conn_id=PG_CONN, table="queue_stats", **FAST
    )
    first = [run(key) for key in ("2024-03-01T00:00:00", "2024-03-02T00:00:00", "2024-03-03T00:00:00")]
    before = per_day()

    again = run("2024-03-02T00:00:00")

    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert [r.task_state for r in [*first, again]] == ["success"] * 4
    assert interval_filters(emulator) == [(d, d) for d in [*days, "2024-03-02"]]
    assert before == per_day() == {d: csv_rows(d, d) for d in days}  # each day once, before and after
    assert (again.result["mode"], again.result["rows_deleted"]) == (
        "replace_days",
        csv_rows("2024-03-02", "2024-03-02"),
    )
    assert again.result["partition_key"] == "2024-03-02T00:00:00"
    assert [key for key, _ in asset_events(dag.asset)] == [f"{d}T00:00:00" for d in [*days, "2024-03-02"]]


@requires_partitions
def test_a_partitioned_load_refuses_to_replace_the_whole_table_before_any_request(
    partitioned: Callable[..., Any],
    emulator: Emulator,
    pg_database: PostgresServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _, run = partitioned(
        "FlexInsightsToSqlOperator",
        report_id=QUEUE_REPORT,
        sql_conn_id=PG_CONN,
        table="t",
        mode="replace",
        **FAST,
    )

    outcome = run("2024-03-01T00:00:00")

    assert outcome.task_state == "failed"
    assert (
        "mode 'replace' empties the whole table, so each partition's run would delete the other partitions' "
        "days; use mode 'replace_days' (the default) in a partitioned DAG." in capfd.readouterr().out
    )
    assert emulator.requests == []


# --- the examples --------------------------------------------------------------------------------


def copy_example(airflow_db: Path, name: str) -> Path:
    path = airflow_db / "dags" / name
    shutil.copy(REPO_ROOT / "example_dags" / name, path)
    return path


@pytest.fixture
def sqlite_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples' connection ``warehouse``, a SQLite file."""
    database = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    return database


def rows_per_day(database: Path, table: str) -> list[tuple[str, int]]:
    with sqlite3.connect(database) as db:
        return db.execute(f"SELECT date, COUNT(*) FROM {table} GROUP BY date ORDER BY date").fetchall()


@requires_partitions
def test_the_pipeline_example_exports_a_day_into_its_folder_and_the_load_replaces_that_day(
    airflow_db: Path,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    sqlite_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each DAG of the example with the key the scheduler gives it (the asset hand-off between them
    is tests/e2e/test_partitions.py's, on a real scheduler)."""
    monkeypatch.setenv("AIRFLOW_VAR_FLEX_INSIGHTS_EXPORT_DIR", str(tmp_path / "exports"))
    path = copy_example(airflow_db, "flex_insights_partitioned_pipeline.py")
    key = "2024-03-01T00:00:00"
    try:
        exported, _ = run_partition(path, "flex_insights_partitioned_export", key)
        loaded, _ = run_partition(path, "flex_insights_partitioned_load", key)
    finally:
        path.unlink()

    written = tmp_path / "exports" / "partitioned" / "queue_report" / "date=2024-03-01" / "queue_report.csv"
    assert (exported.task_state, loaded.task_state) == ("success", "success")
    assert written.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-01")
    assert [key for key, _ in asset_events("flex_insights_queue_report_days")][-1] == key
    assert rows_per_day(sqlite_warehouse, "queue_stats_daily") == [
        ("2024-03-01", csv_rows("2024-03-01", "2024-03-01"))
    ]


@requires_partitions
def test_the_partitioned_backfill_example_leaves_each_day_once(
    airflow_db: Path, flex_connection: str, emulator: Emulator, sqlite_warehouse: Path
) -> None:
    path = copy_example(airflow_db, "flex_insights_partitioned_backfill.py")
    try:
        runs = [
            run_partition(path, "flex_insights_partitioned_backfill", f"{day}T00:00:00")[0]
            for day in ("2024-03-01", "2024-03-02", "2024-03-01")
        ]
    finally:
        path.unlink()

    assert [run.task_state for run in runs] == ["success"] * 3
    assert interval_filters(emulator) == [(d, d) for d in ("2024-03-01", "2024-03-02", "2024-03-01")]
    assert rows_per_day(sqlite_warehouse, "queue_stats") == [
        (day, csv_rows(day, day)) for day in ("2024-03-01", "2024-03-02")
    ]
