"""FlexInsightsToSqlOperator and its loader against a real PostgreSQL server and SQLite.

Operator tests run the real operator with dag.test() against the emulator; loader tests feed the
loader CSV bytes of shapes the emulator does not serve (new columns, hostile names, misfit values).
"""

from __future__ import annotations

import csv
import io
import json
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import (
    ALIAS_REPORT,
    DEMO_WORKSPACE,
    EU_DATE_REPORT,
    QUEUE_REPORT,
    REORDERED_REPORT,
    Emulator,
    EmulatorConfig,
)
from airflow_provider_flexinsights.emulator.data import render_report
from airflow_provider_flexinsights.emulator.model import (
    Fault,
    GridColumn,
    Layout,
    Report,
    Workspace,
    default_reports,
)
from airflow_provider_flexinsights.emulator.postgres import PostgresServer
from airflow_provider_flexinsights.library.columns import ColumnType, MisfitValueError, plan_columns
from airflow_provider_flexinsights.library.protocol import LayoutColumn
from airflow_provider_flexinsights.transfers.sql_load import TableLoader

from tests.conftest import DagRunResult, run_dag_file

PG_CONN, SQLITE_CONN = "warehouse_pg", "warehouse_sqlite"

_DAG_FILE = """\
import pendulum
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow_provider_flexinsights.transfers.flex_insights_to_sql import FlexInsightsToSqlOperator

with DAG({dag_id!r}, schedule={schedule}, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    FlexInsightsToSqlOperator(task_id="load", **{kwargs})
"""
FAST = {"poll_interval": 0.05, "max_poll_interval": 0.1, "deferrable": False}


@pytest.fixture
def pg_database(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> PostgresServer:
    """A fresh database on the session's server, as Airflow connection ``warehouse_pg``."""
    name = f"wh_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    url = f"postgres://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/{name}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{PG_CONN.upper()}", url)
    monkeypatch.setattr(postgres_server, "database", name, raising=False)
    return postgres_server


@pytest.fixture
def sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "warehouse.db"
    connection = json.dumps({"conn_type": "sqlite", "host": str(path)})
    monkeypatch.setenv(f"AIRFLOW_CONN_{SQLITE_CONN.upper()}", connection)
    return path


def sql_hook(conn_id: str) -> Any:
    from airflow.providers.common.compat.sdk import BaseHook

    return BaseHook.get_connection(conn_id).get_hook()


def query(conn_id: str, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in sql_hook(conn_id).get_records(sql)]


@pytest.fixture(params=["postgres", "sqlite"])
def database(request: pytest.FixtureRequest) -> str:
    """Each loader test on both engines: COPY on PostgreSQL, batched inserts on SQLite."""
    if request.param == "postgres":
        request.getfixturevalue("pg_database")
        return PG_CONN
    request.getfixturevalue("sqlite_path")
    return SQLITE_CONN


@pytest.fixture
def run_load(airflow_db: Path, flex_connection: str) -> Iterator[Callable[..., DagRunResult]]:
    written: list[Path] = []

    def run(logical_date: str = "2024-03-02", schedule: str = "None", **kwargs: Any) -> DagRunResult:
        dag_id = f"test_load_{uuid.uuid4().hex[:10]}"
        path = airflow_db / "dags" / f"{dag_id}.py"
        source = _DAG_FILE.format(dag_id=dag_id, schedule=schedule, kwargs=repr({**FAST, **kwargs}))
        path.write_text(textwrap.dedent(source))
        written.append(path)
        return run_dag_file(path, dag_id, logical_date)

    yield run
    for path in written:
        path.unlink(missing_ok=True)


def csv_rows(day_from: str, day_to: str) -> int:
    return render_report(DEMO_WORKSPACE, QUEUE_REPORT, day_from, day_to).count(b"\r\n") - 1


def column_types(conn_id: str, table: str) -> dict[str, str]:
    """The table's columns and their types as the database reports them (either engine)."""
    from sqlalchemy import inspect

    engine = sql_hook(conn_id).get_sqlalchemy_engine()
    try:
        return {c["name"]: str(c["type"]).upper() for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


# --- the operator, end to end -----------------------------------------------------------------------


def test_a_day_loaded_twice_leaves_one_copy_with_the_csvs_row_count(
    run_load: Callable[..., DagRunResult], pg_database: PostgresServer, emulator: Emulator
) -> None:
    day = {"report_id": QUEUE_REPORT, "sql_conn_id": PG_CONN, "table": "queue_stats"}
    first = run_load(**day, date_from="2024-02-01", date_to="2024-02-01")
    second = run_load(**day, date_from="2024-02-01", date_to="2024-02-01")

    expected = csv_rows("2024-02-01", "2024-02-01")
    assert first.task_state == second.task_state == "success"
    assert first.result["rows_inserted"] == second.result["rows_inserted"] == expected
    assert (first.result["rows_deleted"], second.result["rows_deleted"]) == (0, expected)
    assert query(PG_CONN, "SELECT count(*) FROM queue_stats") == [(expected,)]
    assert second.result["columns"]["Offered Contacts"] == "offered_contacts"
    assert second.result["column_types"] == {
        "queue": "TEXT", "date": "DATE", "interval_15_minutes": "TEXT", "channel": "TEXT",
        "direction": "TEXT", "offered_contacts": "NUMERIC", "average_handle_time": "NUMERIC",
        "abandons": "NUMERIC", "service_level": "NUMERIC", "average_speed_of_answer": "NUMERIC",
        "volume_handled": "NUMERIC",
    }  # fmt: skip
    types = query(
        PG_CONN,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'queue_stats' "
        "AND column_name IN ('date', 'offered_contacts', 'queue') ORDER BY column_name",
    )
    assert types == [("date", "date"), ("offered_contacts", "numeric"), ("queue", "text")]
    assert query(PG_CONN, "SELECT DISTINCT date::text FROM queue_stats") == [("2024-02-01",)]
    assert second.result["export_uri"].startswith(f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/")
    assert emulator.live_sessions == 0
    assert [endpoint for endpoint, _ in emulator.calls()].count("login") == 2  # one session per run


def test_a_seven_day_backfill_run_twice_leaves_seven_days_once(
    run_load: Callable[..., DagRunResult], pg_database: PostgresServer
) -> None:
    daily = 'CronDataIntervalTimetable("0 0 * * *", timezone="UTC")'
    load = {"report_id": QUEUE_REPORT, "sql_conn_id": PG_CONN, "table": "daily"}
    for _ in range(2):
        for day in range(2, 9):  # runs of 2024-02-02 .. 2024-02-08 load 02-01 .. 02-07
            assert run_load(f"2024-02-{day:02d}", daily, **load).task_state == "success"

    per_day = query(PG_CONN, "SELECT date::text, count(*) FROM daily GROUP BY date ORDER BY date")
    assert per_day == [
        (f"2024-02-{d:02d}", csv_rows(f"2024-02-{d:02d}", f"2024-02-{d:02d}")) for d in range(1, 8)
    ]


MID_MONTH = 700_000


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(faults=[Fault("export", "truncate", after_bytes=MID_MONTH, count=99)])]
)
def test_a_download_broken_mid_load_leaves_the_table_unchanged(
    run_load: Callable[..., DagRunResult], pg_database: PostgresServer, emulator: Emulator
) -> None:
    sql_hook(PG_CONN).run(
        "CREATE TABLE kept (queue TEXT, date DATE); INSERT INTO kept VALUES ('Sales', '2024-02-01')"
    )

    month = {"date_from": "2024-02-01", "date_to": "2024-02-28"}  # ~1.2 MB: COPY is under way at the break
    run = run_load(report_id=QUEUE_REPORT, sql_conn_id=PG_CONN, table="kept", download_attempts=2, **month)

    assert run.task_state == "failed"
    assert [e for e, status in emulator.calls() if e == "export" and status == 200] == ["export"] * 2
    assert query(PG_CONN, "SELECT queue, date::text FROM kept") == [("Sales", "2024-02-01")]
    columns = query(PG_CONN, "SELECT column_name FROM information_schema.columns WHERE table_name = 'kept'")
    assert sorted(columns) == [("date",), ("queue",)]  # the new columns' ALTERs were rolled back too


def test_sqlite_load_through_the_operator(run_load: Callable[..., DagRunResult], sqlite_path: Path) -> None:
    run = run_load(
        report_id=QUEUE_REPORT,
        sql_conn_id=SQLITE_CONN,
        table="queue_stats",
        date_from="2024-02-01",
        date_to="2024-02-02",
    )

    assert run.task_state == "success"
    assert query(SQLITE_CONN, "SELECT count(*) FROM queue_stats") == [(csv_rows("2024-02-01", "2024-02-02"),)]
    assert query(SQLITE_CONN, "SELECT DISTINCT date FROM queue_stats ORDER BY 1") == [
        ("2024-02-01",),
        ("2024-02-02",),
    ]


def test_bad_input_fails_before_any_request(
    run_load: Callable[..., DagRunResult], emulator: Emulator, sqlite_path: Path
) -> None:
    unknown = run_load(
        report_id=QUEUE_REPORT,
        sql_conn_id="no_such_db",
        table="t",
        date_from="2024-02-01",
        date_to="2024-02-01",
    )
    floating = run_load(
        report_id=QUEUE_REPORT,
        sql_conn_id=SQLITE_CONN,
        table="t",
        filters=[{"type": "floating", "from": -7, "to": -1}],
    )

    assert unknown.task_state == floating.task_state == "failed"
    assert emulator.calls() == []


# --- the loader: shapes the emulator does not serve ---------------------------------------------------


def csv_bytes(header: list[str], rows: list[list[str]]) -> Iterator[bytes]:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows([header, *rows])
    data = out.getvalue().encode()
    return iter([data[:7], data[7:]])  # a chunk boundary inside the header


def attribute(*names: str, label_type: str = "") -> LayoutColumn:
    return LayoutColumn("attribute", f"/gdc/md/ws/obj/{names[0]}", names, label_type)


def metric(*names: str) -> LayoutColumn:
    return LayoutColumn("metric", f"/gdc/md/ws/obj/{names[0]}", names)


QUEUE_LAYOUT = (attribute("Queue"), attribute("Date", label_type="GDC.time.day_us"), metric("Offered"))


def load(conn_id: str, table: str, header: list[str], rows: list[list[str]], **options: Any) -> Any:
    layout = options.pop("layout", QUEUE_LAYOUT)
    loader = TableLoader(sql_hook(conn_id), table, days=("2024-02-01", "2024-02-01"), **options)
    return loader.load(csv_bytes(header, rows), lambda names: plan_columns(names, layout))


def test_a_new_report_column_is_added(database: str) -> None:
    load(database, "t", ["Queue", "Date", "Offered"], [["Sales", "02/01/2024", "3"]], mode="append")
    header = ["Queue", "Date", "Offered", "Abandons"]
    layout = (*QUEUE_LAYOUT, metric("Abandons"))
    result = load(database, "t", header, [["Support", "02/02/2024", "4", "1"]], mode="append", layout=layout)

    assert result.added_columns == ["abandons"]
    assert query(database, "SELECT queue, abandons FROM t ORDER BY queue") == [
        ("Sales", None),
        ("Support", 1),
    ]


def test_a_misfit_value_fails_in_one_sentence_and_changes_nothing(database: str) -> None:
    load(database, "t", ["Queue", "Date", "Offered"], [["Sales", "02/01/2024", "3"]], mode="append")

    with pytest.raises(MisfitValueError) as failure:
        load(
            database,
            "t",
            ["Queue", "Date", "Offered"],
            [["Sales", "02/01/2024", "3"], ["Bad", "02/01/2024", "lots"]],
        )

    assert str(failure.value) == (
        "Value 'lots' in column offered, row 2, does not fit its type NUMERIC; the load was rolled back "
        "and the table is unchanged."
    )
    assert query(database, "SELECT queue FROM t") == [("Sales",)]  # the delete of the day was undone too


HOSTILE = ['Queue"; DROP TABLE t; --', "Date", "Offered Contacts ; x"]


def test_names_and_values_with_quotes_spaces_and_semicolons_load_as_data(database: str) -> None:
    table = 'we"ird table; DROP TABLE t; --'
    value = "'); DELETE FROM t; --"
    load(database, "t", ["Queue", "Date", "Offered"], [["Sales", "02/01/2024", "3"]], mode="append")

    layout = (attribute(HOSTILE[0]), attribute("Date", label_type="GDC.time.day_us"), metric(HOSTILE[2]))
    result = load(database, table, HOSTILE, [[value, "02/01/2024", "7"]], mode="append", layout=layout)

    assert [c.name for c in result.columns] == ["queue_drop_table_t", "date", "offered_contacts_x"]
    assert query(database, "SELECT queue FROM t") == [("Sales",)]
    quoted = '"we""ird table; DROP TABLE t; --"'
    assert query(database, f"SELECT queue_drop_table_t, offered_contacts_x FROM {quoted}") == [(value, 7)]


def test_replace_mode_replaces_the_whole_table_and_an_empty_export_keeps_the_columns(database: str) -> None:
    load(
        database,
        "t",
        ["Queue", "Date", "Offered"],
        [["A", "01/05/2024", "1"], ["B", "02/01/2024", "2"]],
        mode="append",
    )
    result = load(database, "t", ["Queue", "Date", "Offered"], [["C", "03/01/2024", "3"]], mode="replace")

    assert (result.rows_deleted, result.rows_inserted) == (2, 1)
    assert query(database, "SELECT queue FROM t") == [("C",)]


def test_column_names_are_snake_case_and_deduplicated() -> None:
    columns = plan_columns(["Queue", "queue", "1st Value", "Ünit %", ""], ())

    assert [c.name for c in columns] == ["queue", "queue_2", "c_1st_value", "nit", "column"]
    assert {c.type for c in columns} == {ColumnType.TEXT}  # no definition: the safe rule


def test_lineage_names_the_table_as_openlineage_names_postgres(pg_database: PostgresServer) -> None:
    from airflow_provider_flexinsights.operators.lineage import table_lineage

    columns = plan_columns(["Queue", "Date", "Offered"], QUEUE_LAYOUT)
    result = {"table": "queue_stats", "rows_inserted": 42, "workspace_id": DEMO_WORKSPACE, "report_id": "7"}

    lineage = table_lineage(result, "http://127.0.0.1:1", sql_hook(PG_CONN), columns)

    (output,) = lineage.outputs
    assert output.namespace == f"postgres://{pg_database.host}:{pg_database.port}"
    assert output.name == f"{pg_database.database}.public.queue_stats"  # type: ignore[attr-defined]
    assert [(f.name, f.type) for f in output.facets["schema"].fields] == [
        ("queue", "TEXT"), ("date", "DATE"), ("offered", "NUMERIC")
    ]  # fmt: skip
    assert output.outputFacets["outputStatistics"].rowCount == 42
    source = output.facets["columnLineage"].fields["offered"].inputFields[0]
    assert (source.namespace, source.name, source.field) == (
        "flexinsights://127.0.0.1:1",
        f"{DEMO_WORKSPACE}/7",
        "Offered",
    )


# --- Parquet ---------------------------------------------------------------------------------------


def test_parquet_round_trip_has_the_typed_schema_and_every_row(
    run_export: Callable[..., DagRunResult], flex_connection: str, tmp_path: Path
) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    target = tmp_path / "out" / "queue.parquet"
    run = run_export(
        report_id=QUEUE_REPORT, destination=str(target), date_from="2024-02-01", date_to="2024-02-02", **FAST
    )

    assert run.task_state == "success"
    table = pq.read_table(target)
    assert table.num_rows == csv_rows("2024-02-01", "2024-02-02")
    assert table.schema.field("queue").type == pa.string()
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("offered_contacts").type == pa.float64()
    assert set(table.column("date").to_pylist()) == {dt.date(2024, 2, 1), dt.date(2024, 2, 2)}
    source = list(
        csv.reader(
            io.StringIO(render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-02-01", "2024-02-02").decode())
        )
    )
    assert table.column("offered_contacts").to_pylist()[:3] == [float(row[5]) for row in source[1:4]]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # written atomically
    assert run.result["path"] == str(target)


def test_parquet_misfit_value_writes_nothing() -> None:
    from airflow_provider_flexinsights.library.parquet import parquet_chunks

    plan = lambda names: plan_columns(names, QUEUE_LAYOUT)  # noqa: E731
    rows = [["A", "02/01/2024", "1"], ["B", "02/01/2024", "lots"]]
    with pytest.raises(MisfitValueError) as failure:
        b"".join(parquet_chunks(csv_bytes(["Queue", "Date", "Offered"], rows), plan))

    assert str(failure.value) == (
        "Value 'lots' in column offered, row 2, does not fit its type NUMERIC; nothing was written."
    )


# --- typed by name: reports that are not shaped like the queue report -----------------------------

TWO_DAYS = {"date_from": "2024-02-12", "date_to": "2024-02-13"}  # 12/02 reads as December the US way
TYPED_BY_NAME = {
    # the CSV starts with the day; the grid has the metrics in its rows, attributes in its columns,
    # and two definitions (the current one is the last)
    REORDERED_REPORT: {
        "date": "DATE", "channel": "TEXT", "queue": "TEXT",
        "offered_contacts": "NUMERIC", "abandons": "NUMERIC", "volume_handled": "NUMERIC",
    },
    # the grid's aliases are the CSV's headers; days labelled GDC.time.day (yyyy-mm-dd)
    ALIAS_REPORT: {"day": "DATE", "team_queue": "TEXT", "offered": "NUMERIC", "service_level": "NUMERIC"},
    # days labelled GDC.time.day_eu (dd/mm/yyyy)
    EU_DATE_REPORT: {
        "date": "DATE", "queue": "TEXT", "direction": "TEXT", "average_handle_time": "NUMERIC",
        "abandons": "NUMERIC",
    },
}  # fmt: skip


def exported(report_id: str, date_from: str, date_to: str) -> list[list[str]]:
    """The rows (header first) the emulator serves for this export of a default report."""
    shape = default_reports()[report_id].layout.shape
    text = render_report(DEMO_WORKSPACE, report_id, date_from, date_to, shape=shape).decode()
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize("report_id", list(TYPED_BY_NAME))
def test_each_column_is_typed_by_its_name_and_days_are_read_in_their_labels_format(
    run_load: Callable[..., DagRunResult], database: str, report_id: str
) -> None:
    run = run_load(report_id=report_id, sql_conn_id=database, table="typed", **TWO_DAYS)

    assert run.task_state == "success"
    types = TYPED_BY_NAME[report_id]
    assert run.result["column_types"] == types
    assert column_types(database, "typed") == types
    day = next(name for name, type_ in types.items() if type_ == "DATE")
    assert query(database, f"SELECT DISTINCT CAST({day} AS TEXT) FROM typed ORDER BY 1") == [
        ("2024-02-12",),
        ("2024-02-13",),
    ]
    header, *rows = exported(report_id, **TWO_DAYS)
    metric = next(name for name, type_ in types.items() if type_ == "NUMERIC")
    source = header[list(types).index(metric)]
    (total,) = query(database, f"SELECT SUM({metric}) FROM typed")[0]
    assert float(total) == pytest.approx(sum(float(row[header.index(source)]) for row in rows))


@pytest.mark.parametrize("report_id", list(TYPED_BY_NAME))
def test_parquet_types_each_column_by_its_name(
    run_export: Callable[..., DagRunResult], flex_connection: str, tmp_path: Path, report_id: str
) -> None:
    import datetime as dt

    import pyarrow.parquet as pq

    target = tmp_path / f"{report_id}.parquet"
    run = run_export(report_id=report_id, destination=str(target), **TWO_DAYS, **FAST)

    assert run.task_state == "success"
    table = pq.read_table(target)
    arrow = {"TEXT": "string", "NUMERIC": "double", "DATE": "date32[day]"}
    assert {f.name: str(f.type) for f in table.schema} == {
        name: arrow[type_] for name, type_ in TYPED_BY_NAME[report_id].items()
    }
    day = next(name for name, type_ in TYPED_BY_NAME[report_id].items() if type_ == "DATE")
    assert sorted(set(table.column(day).to_pylist())) == [dt.date(2024, 2, 12), dt.date(2024, 2, 13)]
    _, *rows = exported(report_id, **TWO_DAYS)
    assert table.num_rows == len(rows)
    numbers = [i for i, t in enumerate(TYPED_BY_NAME[report_id].values()) if t == "NUMERIC"]
    assert table.column(numbers[0]).to_pylist()[:3] == [float(row[numbers[0]]) for row in rows[:3]]


UNNAMED_REPORT = "4000001"


def workspace_with(report: Report) -> EmulatorConfig:
    """The demo workspace plus ``report`` as UNNAMED_REPORT."""
    workspace = Workspace()
    workspace.reports[UNNAMED_REPORT] = report
    return EmulatorConfig(workspaces={DEMO_WORKSPACE: workspace})


# the raw export's header is not recorded next to its grid: a CSV may write what the metadata does
# not name (a header override models it); such a column is TEXT, whatever the definition says of it
PARTLY_NAMED = Report(
    "Queue performance, two headers the definition does not name",
    layout=Layout(
        rows=(GridColumn("Queue"), GridColumn("Date"), GridColumn("Channel", header="Channel Name")),
        metrics=(
            GridColumn("Offered Contacts", alias="Offered Contacts"),
            GridColumn("Abandons", header="Abandoned"),
        ),
    ),
)


@pytest.mark.parametrize("emulator_config", [workspace_with(PARTLY_NAMED)])
def test_a_header_the_report_does_not_name_stays_text_and_the_load_says_why(
    run_load: Callable[..., DagRunResult],
    run_export: Callable[..., DagRunResult],
    database: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import pyarrow.parquet as pq

    load = run_load(report_id=UNNAMED_REPORT, sql_conn_id=database, table="partly", **TWO_DAYS)
    target = tmp_path / "partly.parquet"
    export = run_export(report_id=UNNAMED_REPORT, destination=str(target), **TWO_DAYS, **FAST)

    assert load.task_state == export.task_state == "success"
    types = {
        "queue": "TEXT", "date": "DATE", "channel_name": "TEXT", "offered_contacts": "NUMERIC",
        "abandoned": "TEXT",
    }  # fmt: skip
    assert load.result["column_types"] == column_types(database, "partly") == types
    assert query(database, "SELECT DISTINCT abandoned FROM partly ORDER BY 1")[0] == ("0",)  # text as written
    assert str(pq.read_table(target).schema.field("abandoned").type) == "string"
    why = (
        f"Column types of report {UNNAMED_REPORT} in workspace {DEMO_WORKSPACE} for 2024-02-12..2024-02-13 "
        "by name: queue TEXT (attribute), date DATE (label type GDC.time.day_us, MM/DD/YYYY), "
        "channel_name TEXT (not named by the report), offered_contacts NUMERIC (metric), "
        "abandoned TEXT (not named by the report)."
    )
    assert capfd.readouterr().out.count(why) == 2  # one line per typed load: the table, the file


UNNAMED = Report(
    "Queue performance, headers the definition does not name",
    layout=Layout(
        rows=(GridColumn("Queue", header="Q"), GridColumn("Date", header="Day of contact")),
        metrics=(GridColumn("Abandons", alias="Abandons", header="Abandoned"),),
    ),
)


@pytest.mark.parametrize("emulator_config", [workspace_with(UNNAMED)])
def test_when_no_header_lines_up_every_column_is_text_and_one_line_says_why(
    run_load: Callable[..., DagRunResult], sqlite_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_load(report_id=UNNAMED_REPORT, sql_conn_id=SQLITE_CONN, table="t", mode="append", **TWO_DAYS)

    assert run.task_state == "success"
    assert run.result["column_types"] == {"q": "TEXT", "day_of_contact": "TEXT", "abandoned": "TEXT"}
    output = capfd.readouterr().out
    assert output.count("no CSV header matches a column of the report's definition") == 1
    assert (
        "(headers 'Q', 'Day of contact', 'Abandoned'; the definition names 'Queue', "
        "'Date'/'Date (mm/dd/yyyy)', 'Abandons'), so every column loads as TEXT." in output
    )


@pytest.mark.parametrize(
    "emulator_config",
    # the trigger's poll that finds the export ready is answered whole (skip=1); the worker's first
    # download breaks after 1 MB of 1.7 MB (the loader is under way), its second attempt loads
    [EmulatorConfig(faults=[Fault("export", "truncate", after_bytes=1_000_000, count=1, skip=1)])],
)
def test_the_layout_is_read_once_per_try_and_the_identifiers_once_per_task(
    run_load: Callable[..., DagRunResult], sqlite_path: Path, emulator: Emulator
) -> None:
    run = run_load(
        report_id=REORDERED_REPORT, sql_conn_id=SQLITE_CONN, table="t", deferrable=True, download_attempts=2,
        date_from="2024-01-01", date_to="2024-03-31",
    )  # fmt: skip

    assert run.task_state == "success"
    downloads = [status for endpoint, status in emulator.calls() if endpoint == "export" and status == 200]
    assert len(downloads) == 3  # the trigger's, then two loads (the first broke midway), one layout
    assert [endpoint for endpoint, _ in emulator.calls()].count("identifiers") == 1  # the export's own
    reads = [r.path for r in emulator.requests if r.endpoint == "object"]
    assert sorted(set(reads)) == sorted(reads)  # no object read twice
    assert reads[:2] == [
        f"/gdc/md/{DEMO_WORKSPACE}/obj/{REORDERED_REPORT}",
        f"/gdc/md/{DEMO_WORKSPACE}/obj/{REORDERED_REPORT}2",  # the last of its two definitions
    ]
    assert len(reads) == 2 + 3 + 3 + 3  # the report, its definition, 3 labels, their attributes, 3 metrics


# --- the loader: days in each label's format -----------------------------------------------------------

EU_LAYOUT = (attribute("Queue"), attribute("Date", label_type="GDC.time.day_eu"), metric("Offered"))


def test_a_day_not_in_its_labels_format_fails_naming_column_value_and_row(database: str) -> None:
    header = ["Queue", "Date", "Offered"]
    load(database, "t", header, [["Sales", "01/02/2024", "3"]], mode="append", layout=EU_LAYOUT)

    with pytest.raises(MisfitValueError) as failure:
        load(
            database,
            "t",
            header,
            [["Sales", "13/02/2024", "3"], ["Bad", "02/13/2024", "4"]],
            layout=EU_LAYOUT,
        )

    assert str(failure.value) == (
        "Value '02/13/2024' in column date, row 2, does not fit its type DATE (DD/MM/YYYY); the load was "
        "rolled back and the table is unchanged."
    )
    assert query(database, "SELECT queue, CAST(date AS TEXT) FROM t") == [("Sales", "2024-02-01")]


def test_days_of_two_field_orders_in_one_load_are_each_read_in_their_own(database: str) -> None:
    layout = (
        attribute("Queue"),
        attribute("Date", label_type="GDC.time.day_us"),
        attribute("Day", label_type="GDC.time.day_eu"),
        attribute("Day ISO", label_type="GDC.time.day"),
        attribute("Day dashed", label_type="GDC.time.day_iso"),
    )
    header = ["Queue", "Date", "Day", "Day ISO", "Day dashed"]
    rows = [["Sales", "02/01/2024", "01/02/2024", "2024-02-01", "01-02-2024"]]

    result = load(database, "t", header, rows, mode="append", layout=layout)

    assert [c.type for c in result.columns] == [ColumnType.TEXT, *[ColumnType.DATE] * 4]
    days = query(database, "SELECT CAST(date AS TEXT), CAST(day AS TEXT), CAST(day_iso AS TEXT), "
                 "CAST(day_dashed AS TEXT) FROM t")  # fmt: skip
    assert days == [("2024-02-01",) * 4]


def test_parquet_day_not_in_its_labels_format_fails_naming_column_value_and_row() -> None:
    from airflow_provider_flexinsights.library.parquet import parquet_chunks

    plan = lambda names: plan_columns(names, EU_LAYOUT)  # noqa: E731
    rows = [["A", "13/02/2024", "1"], ["B", "02/13/2024", "2"]]
    with pytest.raises(MisfitValueError) as failure:
        b"".join(parquet_chunks(csv_bytes(["Queue", "Date", "Offered"], rows), plan))

    assert str(failure.value) == (
        "Value '02/13/2024' in column date, row 2, does not fit its type DATE (DD/MM/YYYY); "
        "nothing was written."
    )


# --- matching rules ------------------------------------------------------------------------------------


def test_headers_match_names_after_the_same_normalization_and_only_one_to_one() -> None:
    layout = (
        attribute("Queue"),
        metric("Offered Contacts"),
        metric("Handled", "Volume Handled"),  # no alias: two candidate titles
        attribute("Channel"),
        metric("Channel"),  # two columns answer to one name: neither is trusted
    )
    header = [" offered\u00a0CONTACTS ", "Volume Handled", "Channel", "Queue", "queue"]

    columns = plan_columns(header, layout)

    assert [(c.name, c.type, c.reason) for c in columns] == [
        ("offered_contacts", ColumnType.NUMERIC, "metric"),
        ("volume_handled", ColumnType.NUMERIC, "metric"),
        ("channel", ColumnType.TEXT, "named by several columns of the report"),
        ("queue", ColumnType.TEXT, "its column is named by several headers"),  # so neither is trusted
        ("queue_2", ColumnType.TEXT, "its column is named by several headers"),
    ]


def test_every_emulated_reports_csv_header_lines_up_with_its_definition(
    flex_connection: str, emulator: Emulator
) -> None:
    from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook

    with FlexInsightsHook().session() as client:
        for report_id, report in default_reports().items():
            header = list(report.layout.shape.header)
            columns = plan_columns(header, client.report_layout(DEMO_WORKSPACE, report_id))
            assert all(c.matched for c in columns), (report_id, [c for c in columns if not c.matched])


def test_the_operator_s_lineage_reads_the_columns_from_its_own_result(pg_database: PostgresServer) -> None:
    """FlexInsightsToSqlOperator keeps no columns on ``self``: the XCom result names them all."""
    from airflow_provider_flexinsights.operators.lineage import table_lineage

    columns = plan_columns(["Queue", "Date", "Offered"], QUEUE_LAYOUT)
    result = {
        "table": "queue_stats",
        "rows_inserted": 42,
        "workspace_id": DEMO_WORKSPACE,
        "report_id": "7",
        "columns": {c.source: c.name for c in columns},  # as write() returns them
        "column_types": {c.name: c.type.value for c in columns},
    }

    (given,) = table_lineage(result, "http://127.0.0.1:1", sql_hook(PG_CONN), columns).outputs
    (read,) = table_lineage(result, "http://127.0.0.1:1", sql_hook(PG_CONN)).outputs

    assert read.facets == given.facets
