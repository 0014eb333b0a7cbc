"""FlexInsightsExportOperator in real Airflow (dag.test(), triggers inline) against the emulator."""

from __future__ import annotations

import getpass
import hashlib
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights import session
from airflow_provider_flexinsights.backoff import RetryPolicy
from airflow_provider_flexinsights.emulator import (
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    EMPTY_REPORT,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    render_report,
)

from tests.conftest import (
    CONN_ENV,
    DagRunResult,
    Unwritable,
    closed_port,
    connection_json,
    immutable,
    secrets_in,
)

Run = Callable[..., DagRunResult]
FAST_POLLS = {"poll_interval": 0.05, "max_poll_interval": 0.2}


def export_filter(emulator: Emulator) -> dict[str, str]:
    (execute,) = [r for r in emulator.requests if r.endpoint == "execute"]
    constraint: dict[str, str] = execute.body["report_req"]["context"]["filters"][0]["constraint"]
    return constraint


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_export_writes_the_csv_and_returns_a_small_result(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path, deferrable: bool
) -> None:
    destination = tmp_path / "exports" / "queue-{{ ds }}.csv"

    run = run_export(
        report_id=QUEUE_REPORT,
        date_from="2024-02-01",
        date_to="2024-02-03",
        destination=str(destination),
        deferrable=deferrable,
        **FAST_POLLS,
    )

    written = tmp_path / "exports" / "queue-2024-03-02.csv"
    expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-02-01", "2024-02-03")
    assert run.task_state == "success"
    assert written.read_bytes() == expected
    assert run.result == {
        "path": str(written),
        "bytes": len(expected),
        "sha256": hashlib.sha256(expected).hexdigest(),
        "export_uri": run.result["export_uri"],
        "empty": False,
        "workspace_id": DEMO_WORKSPACE,
        "report_id": QUEUE_REPORT,
        "date_from": "2024-02-01",
        "date_to": "2024-02-03",
        "filters": [],
    }
    assert run.result["export_uri"].startswith(f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/")
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary left behind
    assert emulator.live_sessions == 0


def test_deferrable_waits_in_the_trigger_not_the_worker(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run_export(report_id=QUEUE_REPORT, destination=str(tmp_path / "a.csv"), deferrable=True, **FAST_POLLS)

    polls = [(r.status, r.user_agent.split("(")[1]) for r in emulator.requests if r.endpoint == "export"]
    # worker: first poll; triggerer: polls until ready (body not read); worker: the download.
    assert polls == [(202, "requests)"), (202, "aiohttp)"), (200, "aiohttp)"), (200, "requests)")]
    assert [e for e, _ in emulator.calls()].count("execute") == 1


def test_in_worker_polling_never_touches_the_triggerer(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run_export(report_id=QUEUE_REPORT, destination=str(tmp_path / "a.csv"), deferrable=False, **FAST_POLLS)

    assert all("requests" in r.user_agent for r in emulator.requests)
    assert emulator.calls() == [
        ("login", 200),
        ("token", 200),
        ("identifiers", 200),
        ("execute", 201),
        ("export", 202),
        ("export", 202),
        ("export", 200),
        ("logout", 204),
    ]


@pytest.mark.parametrize(
    ("schedule", "logical_date", "expected"),
    [
        ("None", "2024-03-02", ("2024-03-02", "2024-03-02")),  # manual run: zero-length interval
        (
            "DeltaDataIntervalTimetable(datetime.timedelta(days=7))",
            "2024-03-09",
            ("2024-03-02", "2024-03-08"),
        ),
        (
            'CronDataIntervalTimetable("0 0 * * *", timezone="UTC")',
            "2024-03-02",
            ("2024-03-01", "2024-03-01"),
        ),
    ],
    ids=["zero-length", "weekly-interval", "daily-interval"],
)
def test_default_dates_are_the_whole_days_of_the_data_interval(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    schedule: str,
    logical_date: str,
    expected: tuple[str, str],
) -> None:
    run = run_export(
        schedule=schedule,
        logical_date=logical_date,
        report_id=QUEUE_REPORT,
        destination=str(tmp_path / "out.csv"),
        deferrable=False,
        **FAST_POLLS,
    )

    assert run.task_state == "success"
    assert export_filter(emulator) == {"type": "interval", "from": expected[0], "to": expected[1]}
    assert (tmp_path / "out.csv").read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, *expected)


VALID: dict[str, Any] = {"report_id": QUEUE_REPORT, "date_from": "2024-03-01", "date_to": "2024-03-01"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"date_from": "2024-02-30"}, "date_from must be a real date written YYYY-MM-DD, got '2024-02-30'"),
        ({"date_to": "03/01/2024"}, "date_to must be a real date written YYYY-MM-DD, got '03/01/2024'"),
        ({"date_from": "2024-03-05"}, "date_from (2024-03-05) is after date_to (2024-03-01)"),
        ({"report_id": "obj/3035643"}, "report_id must be the numeric object id"),
        ({"report_id": "{{ params.get('missing', '') }}"}, "report_id must be the numeric object id"),
        ({"workspace_id": "ABCDEF"}, "workspace_id must be the 32 lowercase letters and digits"),
        ({"destination": ""}, "destination must be a file path or an object storage URI"),
        ({"destination": "/tmp/exports/"}, "destination must name a file, not a folder"),
    ],
    ids=[
        "impossible-date",
        "us-date",
        "reversed-range",
        "report-uri",
        "empty-report",
        "workspace",
        "no-dest",
        "dir",
    ],
)
def test_bad_input_fails_with_a_clear_error_and_no_request(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    overrides: dict[str, Any],
    message: str,
) -> None:
    kwargs = {**VALID, "destination": str(tmp_path / "out.csv"), **overrides}

    run = run_export(retries=3, **kwargs)

    assert run.task_state == "failed"  # not up_for_retry: a retry cannot fix the DAG
    assert message in capfd.readouterr().out
    assert emulator.requests == []


def test_missing_workspace_everywhere_is_a_clear_error(
    run_export: Run,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url, workspace_id=""))

    run = run_export(**VALID, destination=str(tmp_path / "out.csv"))

    assert run.task_state == "failed"
    assert (
        "No workspace_id: pass workspace_id to the operator or set the extra workspace_id"
        in capfd.readouterr().out
    )
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("on_empty", "task_state", "file_bytes"),
    [("succeed", "success", b""), ("skip", "skipped", None), ("fail", "failed", None)],
)
def test_report_without_data(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    on_empty: str,
    task_state: str,
    file_bytes: bytes | None,
) -> None:
    destination = tmp_path / "empty.csv"

    run = run_export(
        **{**VALID, "report_id": EMPTY_REPORT},
        destination=str(destination),
        on_empty=on_empty,
        deferrable=True,
        **FAST_POLLS,
    )

    assert run.task_state == task_state
    assert (destination.read_bytes() if destination.exists() else None) == file_bytes
    assert ("export", 204) in emulator.calls()
    if on_empty == "succeed":
        assert run.result is not None and run.result["empty"] is True and run.result["bytes"] == 0
    if on_empty == "fail":
        assert (
            f"Flex Insights has no data for report {EMPTY_REPORT} in workspace {DEMO_WORKSPACE}"
            in capfd.readouterr().out
        )


BROKEN_DOWNLOAD = EmulatorConfig(
    pending_polls=1, faults=[Fault("export", "reset", count=99, after_bytes=50_000)]
)


@pytest.mark.parametrize("emulator_config", [BROKEN_DOWNLOAD])
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_download_broken_midway_leaves_no_partial_file(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path, deferrable: bool
) -> None:
    destination = tmp_path / "queue.csv"
    destination.write_bytes(b"yesterday's complete export")

    run = run_export(
        **{**VALID, "date_to": "2024-03-05"},
        destination=str(destination),
        deferrable=deferrable,
        **FAST_POLLS,
    )

    assert run.task_state == "failed"
    assert destination.read_bytes() == b"yesterday's complete export"  # untouched, not truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["queue.csv"]  # the temporary is gone
    assert emulator.live_sessions == 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad-password", "Flex Insights could not log in (HTTP 401: Bad Login or Password!)"),
        ("unknown-report", "could not start the export of report 999999 in workspace " + DEMO_WORKSPACE),
        ("unknown-identifier", "could not find identifier date.date.mmddyyyy in workspace " + DEMO_WORKSPACE),
    ],
)
def test_permanent_failures_fail_the_task_at_once_with_one_clear_sentence(
    run_export: Run,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    password = "not-the-password-42" if case == "bad-password" else DEMO_PASSWORD
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url, password=password))
    if case == "unknown-identifier":
        emulator.config.workspaces[DEMO_WORKSPACE].identifiers.clear()
    report_id = "999999" if case == "unknown-report" else QUEUE_REPORT

    run = run_export(**{**VALID, "report_id": report_id}, destination=str(tmp_path / "x.csv"), retries=3)

    output = capfd.readouterr().out
    assert run.task_state == "failed"  # AirflowFailException: no retry of a hopeless task
    assert message in output
    assert password not in output and secrets_in(output, emulator) == []
    assert not (tmp_path / "x.csv").exists()
    assert emulator.live_sessions == 0


def test_no_secret_reaches_logs_xcom_or_rendered_fields(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    run = run_export(**VALID, destination=str(tmp_path / "x.csv"), deferrable=True, **FAST_POLLS)
    with create_session() as session:
        rendered = [
            str(r.rendered_fields)
            for r in session.query(RenderedTaskInstanceFields).filter_by(dag_id=run.dag_id)
        ]

    output = capfd.readouterr().out
    assert run.task_state == "success" and rendered and len(emulator.issued_secrets) == 6
    for text in (output, str(run.result), *rendered):
        assert secrets_in(text, emulator) == []
        assert DEMO_PASSWORD not in text


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=0, pending_seconds=40)])
def test_an_export_pending_for_40_seconds_is_waited_out_by_the_trigger_in_few_polls(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run = run_export(**VALID, destination=str(tmp_path / "slow.csv"), deferrable=True)  # default schedule

    gets = [r for r in emulator.requests if r.endpoint == "export"]
    assert run.task_state == "success"
    assert len(gets) <= 15, [r.status for r in gets]
    assert gets[0].status == 202 and "requests" in gets[0].user_agent  # the worker's first poll...
    assert all("(aiohttp)" in r.user_agent for r in gets[1:-1])  # ...then only the trigger, until ready
    ready_at = gets[0].at + 40
    detected = next(r.at for r in gets if r.status == 200)
    assert ready_at <= detected <= ready_at + 16.5  # found within one capped poll interval


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("host", "http://flex.example.com", "uses plain http:// to flex.example.com"),
        ("password", "", "has no password"),
        ("login", "", "has no login"),
        (
            "extra",
            {"workspace_id": "too-short"},
            "The extra workspace_id of the Flex Insights connection 'flex_insights_default' must be the 32",
        ),
    ],
    ids=["http-to-remote-host", "no-password", "no-login", "bad-default-workspace"],
)
def test_bad_connection_fails_the_task_before_any_request(
    run_export: Run,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    field: str,
    value: object,
    message: str,
) -> None:
    import json

    document = json.loads(connection_json(emulator.url))
    document[field] = value
    monkeypatch.setenv(CONN_ENV, json.dumps(document))

    run = run_export(**VALID, destination=str(tmp_path / "out.csv"), retries=3)

    assert run.task_state == "failed"
    assert message in capfd.readouterr().out
    assert emulator.requests == []


def test_an_undefined_connection_fails_the_task_once_in_one_sentence(
    run_export: Run, emulator: Emulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_export(
        **VALID, destination=str(tmp_path / "out.csv"), flex_insights_conn_id="flex_nowhere", retries=3
    )

    assert run.task_state == "failed"  # not up_for_retry: a retry cannot define the connection
    assert (
        "The Flex Insights connection 'flex_nowhere' is not defined: add it in Admin > Connections "
        "or set AIRFLOW_CONN_FLEX_NOWHERE." in capfd.readouterr().out
    )
    assert emulator.requests == []


# --- the destination, probed before the export; permanent write errors; an unreachable host --------


def test_an_unwritable_destination_fails_the_task_once_before_any_request(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    unwritable_destination: Unwritable,
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = run_export(**VALID, destination=str(unwritable_destination.destination), retries=3)

    output = capfd.readouterr().out
    assert run.task_state == "failed" and "up_for_retry" not in output  # tried once
    assert unwritable_destination.message in output
    assert "Error: [Errno" not in output  # no OSError traceback under the sentence
    assert emulator.requests == []  # no login, no export


def test_the_probe_leaves_nothing_beside_the_destination(
    run_export: Run, flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    run = run_export(**VALID, destination=str(tmp_path / "new" / "folders" / "out.csv"), **FAST_POLLS)

    assert run.task_state == "success"
    assert [p.name for p in (tmp_path / "new" / "folders").iterdir()] == ["out.csv"]


def lock_once_the_export_starts(emulator: Emulator, folder: Path) -> threading.Thread:
    """Make ``folder`` immutable as soon as the export is started (the probe has passed by then)."""

    def lock() -> None:
        deadline = time.monotonic() + 60
        while not any(r.endpoint == "execute" for r in emulator.requests) and time.monotonic() < deadline:
            time.sleep(0.005)
        subprocess.run(["chattr", "+i", str(folder)], check=True)

    thread = threading.Thread(target=lock, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=1, pending_seconds=0.5)])
def test_a_folder_locked_after_the_probe_fails_the_write_at_once_without_a_new_download(
    run_export: Run,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    with immutable(folder):  # skips where chattr cannot; unlocked at the end
        subprocess.run(["chattr", "-i", str(folder)], check=True)  # open until the export starts
        locker = lock_once_the_export_starts(emulator, folder)
        run = run_export(**VALID, destination=str(folder / "out.csv"), retries=3, **FAST_POLLS)
        locker.join()

    output = capfd.readouterr().out
    assert run.task_state == "failed" and "up_for_retry" not in output  # tried once
    assert (
        f"Cannot write {folder / 'out.csv'}: user {getpass.getuser()!r} may not write in {folder} "
        "(Operation not permitted); give it write access there, or choose another destination." in output
    )
    assert "PermissionError" not in output
    downloads = [r for r in emulator.requests if r.endpoint == "export" and r.status == 200]
    assert len(downloads) == 1  # the write error did not fetch the export again
    assert list(folder.iterdir()) == []


def test_an_unreachable_host_logs_one_line_per_retry_and_fails_in_one_sentence(
    run_export: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    monkeypatch.setenv(CONN_ENV, connection_json(f"http://127.0.0.1:{port}"))
    monkeypatch.setattr(session, "DEFAULT_RETRY", RetryPolicy(base_delay=0.0))  # the 5 tries, unwaited

    run = run_export(**VALID, destination=str(tmp_path / "out.csv"))

    # The retries are the session's stdlib records: a task log gets them through Airflow's bridge;
    # under dag.test() they reach the captured stdout or pytest's log capture, depending on the order
    # in which tests configured logging. Each retry is one line wherever it lands.
    output = capfd.readouterr().out + "\n" + caplog.text
    retries = set(re.findall(r"Flex Insights could not log in \(.*?\); retry \d+ in [\d.]+ s\.", output))
    assert run.task_state == "failed"
    assert retries == {
        f"Flex Insights could not log in (127.0.0.1:{port} refused the connection); retry {n} in 0.0 s."
        for n in range(1, 5)
    }
    assert (
        f"Flex Insights could not log in: 127.0.0.1:{port} refused the connection (5 tries); check that "
        "the host and port are right and that the service is up." in output
    )
    for noise in ("request id None", "HTTPConnectionPool", "Max retries exceeded", "NewConnectionError"):
        assert noise not in output
