"""What the rest of Airflow sees of an export: the extra link, outlet asset events, OpenLineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT, Emulator, render_report
from airflow_provider_flexinsights.operators.lineage import dataset_address

from tests.conftest import CONN_ENV, DagRunResult, connection_json, run_dag_file

REPORT_PAGE = (
    f"#s=/gdc/projects/{DEMO_WORKSPACE}|analysisPage|head|/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"
)

_PRODUCER = """\
import pendulum
from airflow.sdk import DAG, Asset
from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    FlexInsightsExportOperator(
        task_id="export",
        report_id={report_id!r},
        date_from="2024-02-01",
        date_to="2024-02-03",
        destination={destination!r},
        outlets=[Asset({asset_uri!r})],
        poll_interval=0.05,
        max_poll_interval=0.2,
    )
"""


def write_producer(airflow_db: Path, tmp_path: Path, report_id: str = QUEUE_REPORT) -> str:
    """A DAG file exporting to ``tmp_path/queue.csv`` with outlet ``file://tmp_path/queue``."""
    dag_id = f"producer_{uuid.uuid4().hex[:10]}"
    source = _PRODUCER.format(
        dag_id=dag_id,
        report_id=report_id,
        destination=str(tmp_path / "queue.csv"),
        asset_uri=f"file://{tmp_path}/queue",
    )
    (airflow_db / "dags" / f"{dag_id}.py").write_text(textwrap.dedent(source))
    return dag_id


def run_producer(airflow_db: Path, tmp_path: Path, report_id: str = QUEUE_REPORT) -> DagRunResult:
    dag_id = write_producer(airflow_db, tmp_path, report_id)
    path = airflow_db / "dags" / f"{dag_id}.py"
    try:
        return run_dag_file(path, dag_id, "2024-03-02")
    finally:
        path.unlink()


def xcom(dag_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_id, key=key).one_or_none()
        return row.value if row is not None else None


def asset_events(asset_uri: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetModel.uri == asset_uri)
            .all()
        )
        return [dict(event.extra) for event in events]


def test_the_task_links_to_the_report_in_the_analytics_portal(
    airflow_db: Path, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run = run_producer(airflow_db, tmp_path)

    assert run.task_state == "success"
    assert xcom(run.dag_id, "flex_insights_report_url") == f"{emulator.url}/{REPORT_PAGE}"
    # Airflow itself stored the button's target when the task finished
    assert xcom(run.dag_id, "_link_FlexInsightsReportLink") == f"{emulator.url}/{REPORT_PAGE}"


def test_the_link_is_there_even_when_the_export_fails(
    airflow_db: Path, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run = run_producer(airflow_db, tmp_path, report_id="999999")

    assert run.task_state == "failed"
    assert xcom(run.dag_id, "_link_FlexInsightsReportLink").endswith("/obj/999999")


@pytest.mark.parametrize(
    ("overrides", "task_state", "has_button"),
    [({"date_to": "03/01/2024"}, "failed", False), ({"deferrable": True}, "success", True)],
    ids=["stopped-by-bad-input", "deferred-then-resumed"],
)
def test_the_link_answers_from_the_try_with_no_second_error(
    run_export: Callable[..., DagRunResult],
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    task_state: str,
    has_button: bool,
) -> None:
    """Airflow asks the link for its URL when each try ends (after a resume, too): bad input means
    no button, not a second error ("XCom not found") under the one sentence."""
    run = run_export(
        **{"report_id": QUEUE_REPORT, "date_from": "2024-03-01", "date_to": "2024-03-01", **overrides},
        destination=str(tmp_path / "x.csv"),
        poll_interval=0.05,
    )

    output = capfd.readouterr().out
    assert run.task_state == task_state
    assert "XCom not found" not in output
    if has_button:
        assert ("export", 202) in emulator.calls()  # it deferred, and resumed in a new operator
        assert xcom(run.dag_id, "_link_FlexInsightsReportLink") == f"{emulator.url}/{REPORT_PAGE}"
    else:
        assert "date_to must be a real date written YYYY-MM-DD, got '03/01/2024'." in output
        assert xcom(run.dag_id, "_link_FlexInsightsReportLink") == ""


def test_secrets_in_templated_fields_are_masked_before_airflow_stores_the_rendered_fields(
    run_export: Callable[..., DagRunResult],
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A key pasted into the destination URI and the connection's password pasted into a filter:
    Airflow stores the rendered fields before ``execute`` refuses the destination. Both secrets are
    new to this process's masker (earlier tests masked the demo password)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    password, key_secret = f"pw-{uuid.uuid4().hex}", f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url, password=password))

    run = run_export(
        report_id=QUEUE_REPORT,
        date_from="2024-03-01",
        date_to="2024-03-01",
        destination="s3://AKIAEXAMPLE:" + key_secret + "@bucket/{{ ds }}.csv",
        filters=[{"identifier": "label.conversations.queue", "in": ["Sales", password]}],
        retries=3,
    )
    with create_session() as session:
        (stored,) = session.query(RenderedTaskInstanceFields).filter_by(dag_id=run.dag_id)
        rendered = stored.rendered_fields

    output = capfd.readouterr().out
    assert run.task_state == "failed"  # at once, not up_for_retry
    assert "destination has a secret before '@': keep credentials in an Airflow connection" in output
    assert rendered["destination"] == "s3://AKIAEXAMPLE:***@bucket/2024-03-02.csv"
    assert rendered["filters"] == [{"identifier": "label.conversations.queue", "in": ["Sales", "***"]}]
    assert key_secret not in output and password not in output
    assert emulator.requests == []


def test_each_outlet_asset_event_says_which_file_and_days_are_fresh(
    airflow_db: Path, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run = run_producer(airflow_db, tmp_path)

    (event,) = asset_events(f"file://{tmp_path}/queue")
    assert event == run.result
    assert event["path"] == str(tmp_path / "queue.csv")
    assert (event["date_from"], event["date_to"]) == ("2024-02-01", "2024-02-03")


def test_openlineage_sees_the_report_in_and_the_file_out(
    airflow_db: Path, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    """Through the real OpenLineage listener, in a fresh `airflow dags test` process (OpenLineage
    reads its configuration once per process), writing its events to a file."""
    events_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    dag_id = write_producer(airflow_db, tmp_path)
    env = {**os.environ, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)}
    try:
        subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", dag_id, "2024-03-02"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        (airflow_db / "dags" / f"{dag_id}.py").unlink()

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    (complete,) = [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".export")]
    (report,) = complete["inputs"]
    (written,) = complete["outputs"]
    assert report["namespace"] == f"flexinsights://{emulator.url.split('://')[1]}"
    assert report["name"] == f"{DEMO_WORKSPACE}/{QUEUE_REPORT}"
    facet = report["facets"]["flexInsightsExport"]
    assert (facet["dateFrom"], facet["dateTo"], facet["reportId"]) == (
        "2024-02-01",
        "2024-02-03",
        QUEUE_REPORT,
    )
    assert (written["namespace"], written["name"]) == ("file", str(tmp_path / "queue.csv"))
    expected_size = len(render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-02-01", "2024-02-03"))
    assert written["outputFacets"]["outputStatistics"]["size"] == expected_size


@pytest.mark.parametrize(
    ("path", "address"),
    [
        ("/data/exports/q.csv", ("file", "/data/exports/q.csv")),
        ("file:///data/exports/q.csv", ("file", "/data/exports/q.csv")),
        ("s3://bucket/flex/q.csv", ("s3://bucket", "flex/q.csv")),
        ("s3://aws_lake@bucket/flex/q.csv", ("s3://bucket", "flex/q.csv")),
        ("gs://bucket/q.csv", ("gs://bucket", "q.csv")),
    ],
)
def test_files_and_objects_are_named_as_openlineage_names_them(path: str, address: tuple[str, str]) -> None:
    assert dataset_address(path) == address
