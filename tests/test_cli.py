"""The ``flex-insights`` command line, run as a real subprocess against the emulator over loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airflow_provider_flexinsights import cli
from airflow_provider_flexinsights.emulator import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    EMPTY_REPORT,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    render_report,
)

from tests.conftest import CONN_ENV, Unwritable, closed_port, connection_json, secrets_in

FLEX_INSIGHTS = str(Path(sys.executable).with_name("flex-insights"))
UNKNOWN_WORKSPACE = "abcdefghijklmnopqrstuvwxyz012345"
CREDENTIAL_VARIABLES = (CONN_ENV, cli.ENV_EMAIL, cli.ENV_PASSWORD, cli.ENV_URL, cli.ENV_WORKSPACE)


def run(
    *args: str, env: dict[str, str], module: bool = False, stderr: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """The installed console script (or ``python -m airflow_provider_flexinsights``) with only ``env``'s
    credentials: the test process's own credential variables are dropped first."""
    environ = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES} | env
    command = [sys.executable, "-m", "airflow_provider_flexinsights"] if module else [FLEX_INSIGHTS]
    return subprocess.run(
        [*command, *args],
        check=False,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=120,
    )


def airflow_env(emulator: Emulator, **extra: object) -> dict[str, str]:
    return {CONN_ENV: connection_json(emulator.url, **extra)}


def plain_env(emulator: Emulator, password: str = DEMO_PASSWORD, **more: str) -> dict[str, str]:
    return plain_env_for(emulator.url, password, **more)


def plain_env_for(url: str, password: str = DEMO_PASSWORD, **more: str) -> dict[str, str]:
    return {
        cli.ENV_EMAIL: DEMO_EMAIL,
        cli.ENV_PASSWORD: password,
        cli.ENV_URL: url,
        cli.ENV_WORKSPACE: DEMO_WORKSPACE,
        **more,
    }


EXPORT_JANUARY = ("export", "--report", QUEUE_REPORT, "--from", "2024-01-01", "--to", "2024-01-31")
FAST = ("--poll-interval", "0.01")


# --- reports ------------------------------------------------------------------------------------


def test_reports_prints_a_table_of_ids_titles_and_last_changes(emulator: Emulator) -> None:
    done = run("reports", env=airflow_env(emulator))

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "ID       TITLE                                        UPDATED\n"
        "3035643  Queue performance, 15 minute intervals       2024-03-14 16:42:07\n"
        "3035644  Queue performance, retired queues (no data)  2023-11-30 08:15:00\n"
        "3035645  Queue performance by agent team              2024-02-20 11:05:33\n"
        "3035646  Queue performance by channel                 2024-02-21 10:00:00\n"
        "3035647  Daily totals per queue                       2024-04-02 08:30:00\n"
        "3035648  Queue performance, renamed columns           2024-04-03 14:00:00\n"
        "3035649  Queue performance, European dates            2024-04-04 09:15:00\n"
    )
    assert emulator.calls() == [("login", 200), ("token", 200), ("query", 200), ("logout", 204)]


def test_reports_json_for_machines_with_plain_environment_credentials(emulator: Emulator) -> None:
    done = run("reports", "--json", env=plain_env(emulator), module=True)

    reports = json.loads(done.stdout)
    assert done.returncode == 0
    assert [(r["id"], r["updated"]) for r in reports] == [
        (QUEUE_REPORT, "2024-03-14 16:42:07"),
        (EMPTY_REPORT, "2023-11-30 08:15:00"),
        ("3035645", "2024-02-20 11:05:33"),
        ("3035646", "2024-02-21 10:00:00"),
        ("3035647", "2024-04-02 08:30:00"),
        ("3035648", "2024-04-03 14:00:00"),
        ("3035649", "2024-04-04 09:15:00"),
    ]
    assert reports[0]["title"] == "Queue performance, 15 minute intervals"
    assert reports[0]["uri"] == f"/gdc/md/{DEMO_WORKSPACE}/obj/{QUEUE_REPORT}"
    assert set(reports[0]) == {"id", "title", "updated", "uri", "identifier", "summary", "author"}


def test_reports_of_an_unknown_workspace_exit_1_naming_it(emulator: Emulator) -> None:
    done = run("reports", "--workspace", UNKNOWN_WORKSPACE, env=airflow_env(emulator))

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(
        f"flex-insights: error: Flex Insights could not list the reports of workspace {UNKNOWN_WORKSPACE} "
    )
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


# --- identifiers ----------------------------------------------------------------------------------


def test_identifiers_maps_each_to_its_uri(emulator: Emulator) -> None:
    done = run("identifiers", "date.date.mmddyyyy", env=plain_env(emulator))

    uri = emulator.state.label_uri(DEMO_WORKSPACE)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"IDENTIFIER          URI\ndate.date.mmddyyyy  {uri}\n"


def test_unknown_identifiers_exit_1_after_printing_the_known_ones(emulator: Emulator) -> None:
    done = run("identifiers", "label.nowhere", "date.date.mmddyyyy", "--json", env=airflow_env(emulator))

    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "label.nowhere": None,
        "date.date.mmddyyyy": emulator.state.label_uri(DEMO_WORKSPACE),
    }
    assert done.stderr == (
        f"flex-insights: error: Flex Insights could not find identifier label.nowhere in workspace "
        f"{DEMO_WORKSPACE}. Check the spelling and that the workspace has this attribute.\n"
    )


# --- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [False, True], ids=["console-script", "python-m"])
def test_export_writes_exactly_the_served_csv(emulator: Emulator, tmp_path: Path, module: bool) -> None:
    target = tmp_path / "out" / "january.csv"

    done = run(*EXPORT_JANUARY, *FAST, "-o", str(target), env=airflow_env(emulator), module=module)

    expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-01-01", "2024-01-31")
    digest = hashlib.sha256(expected).hexdigest()
    assert (done.returncode, done.stderr) == (0, "")  # not a terminal: no progress line
    assert target.read_bytes() == expected
    assert done.stdout == f"path    {target}\nbytes   {len(expected)}\nsha256  {digest}\n"
    assert [c for c in emulator.calls() if c[0] == "export"] == [("export", 202)] * 2 + [("export", 200)]
    assert emulator.live_sessions == 0  # logged out
    assert secrets_in(done.stdout + done.stderr, emulator) == []


def test_export_json_and_an_object_storage_uri(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "january.csv"

    done = run(*EXPORT_JANUARY, *FAST, "-o", target.as_uri(), "--json", env=plain_env(emulator))

    result = json.loads(done.stdout)
    expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-01-01", "2024-01-31")
    assert done.returncode == 0 and target.read_bytes() == expected
    assert result["sha256"] == hashlib.sha256(expected).hexdigest() and result["bytes"] == len(expected)
    assert result["export_uri"].startswith(f"/gdc/projects/{DEMO_WORKSPACE}/execute/raw/")
    assert {k: result[k] for k in ("empty", "workspace_id", "report_id", "date_from", "date_to")} == {
        "empty": False,
        "workspace_id": DEMO_WORKSPACE,
        "report_id": QUEUE_REPORT,
        "date_from": "2024-01-01",
        "date_to": "2024-01-31",
    }


def test_export_of_an_empty_report_writes_an_empty_file_and_says_so(
    emulator: Emulator, tmp_path: Path
) -> None:
    target = tmp_path / "empty.csv"
    args = ("export", "--report", EMPTY_REPORT, "--from", "2024-01-01", "--to", "2024-01-02", *FAST)

    done = run(*args, "-o", str(target), env=airflow_env(emulator))

    assert done.returncode == 0 and target.read_bytes() == b""
    assert done.stderr == (
        f"Report {EMPTY_REPORT} has no data from 2024-01-01 to 2024-01-02; wrote an empty file.\n"
    )


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(pending_polls=10**6)])
def test_export_gives_up_at_the_timeout_and_writes_nothing(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "late.csv"

    done = run(*EXPORT_JANUARY, *FAST, "--timeout", "0.5", "-o", str(target), env=airflow_env(emulator))

    assert done.returncode == 1 and not target.exists() and list(tmp_path.iterdir()) == []
    assert "was still computing after" in done.stderr and "when the timeout ran out" in done.stderr
    assert "flex-insights --timeout" in done.stderr  # the CLI's own flag, not only the operator's


# --- bad input: exit 2 before any request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env_changes", "message"),
    [
        (("--from", "2024-02-30"), {}, "--from must be a real date written YYYY-MM-DD, got '2024-02-30'."),
        (
            ("--to", "2023-12-31"),
            {},
            "--from (2024-01-01) is after --to (2023-12-31); both days are included.",
        ),
        (("--report", "queue"), {}, "report_id must be the numeric object id"),
        (("-o", "some/folder/"), {}, "destination must name a file, not a folder: 'some/folder/'."),
        (("--workspace", "Not-A-Workspace"), {}, "--workspace must be the 32 lowercase letters and digits"),
        (("--timeout", "0"), {}, "--timeout must be a positive number of seconds, got 0.0."),
        ((), {cli.ENV_WORKSPACE: "short"}, "FLEX_INSIGHTS_WORKSPACE must be the 32 lowercase letters"),
        ((), {cli.ENV_PASSWORD: ""}, "FLEX_INSIGHTS_PASSWORD is not set: set both FLEX_INSIGHTS_EMAIL and"),
        (
            (),
            {cli.ENV_URL: "http://analytics.example.com"},
            "FLEX_INSIGHTS_URL uses plain http:// to analytics.example.com, which would send the password "
            "unencrypted; use https://",
        ),
    ],
    ids=[
        "impossible-date",
        "reversed-range",
        "report-id",
        "folder",
        "workspace",
        "timeout",
        "env-workspace",
        "env-password",
        "plain-http",
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_no_request(
    emulator: Emulator, tmp_path: Path, args: tuple[str, ...], env_changes: dict[str, str], message: str
) -> None:
    argv = [*EXPORT_JANUARY, "-o", str(tmp_path / "out.csv")]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]

    done = run(*argv, env=plain_env(emulator) | env_changes)

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"flex-insights: error: {message}") and done.stderr.count("\n") == 1
    assert emulator.requests == [] and list(tmp_path.iterdir()) == []


def test_missing_arguments_are_argparse_usage_errors(emulator: Emulator) -> None:
    done = run("export", "--from", "2024-01-01", "--to", "2024-01-02", env=plain_env(emulator))

    assert done.returncode == 2
    assert "error: the following arguments are required: --report, -o/--output" in done.stderr
    assert emulator.requests == []


def test_an_undefined_connection_is_bad_input(emulator: Emulator) -> None:
    done = run("reports", "--conn-id", "flex_nowhere", env={})

    assert done.returncode == 2 and emulator.requests == []
    assert done.stderr == (
        "flex-insights: error: The Airflow connection 'flex_nowhere' is not defined: create it, set "
        "AIRFLOW_CONN_FLEX_NOWHERE, or set FLEX_INSIGHTS_EMAIL and FLEX_INSIGHTS_PASSWORD.\n"
    )


def test_no_workspace_anywhere_is_bad_input(emulator: Emulator) -> None:
    env = plain_env(emulator)
    del env[cli.ENV_WORKSPACE]

    done = run("reports", env=env)

    assert done.returncode == 2 and emulator.requests == []
    assert "No workspace: pass --workspace, set FLEX_INSIGHTS_WORKSPACE" in done.stderr


@pytest.mark.parametrize("credentials", ["airflow", "environment"])
def test_a_bad_password_exits_1_with_the_clear_message_and_never_the_password(
    emulator: Emulator, tmp_path: Path, credentials: str
) -> None:
    password = "wrong-password-7f3a"
    if credentials == "airflow":
        env = airflow_env(emulator, password=password)
    else:
        env = plain_env(emulator, password=password)

    done = run(*EXPORT_JANUARY, "-o", str(tmp_path / "out.csv"), env=env)

    assert done.returncode == 1 and done.stdout == ""
    assert re.fullmatch(
        r"flex-insights: error: Flex Insights could not log in \(HTTP 401: Bad Login or Password!\) "
        r"\(request id emu-\S+\)\. Check the email \(login\) and password of the Flex Insights "
        r"connection; the login is not retried so the account does not get locked\.\n",
        done.stderr,
    )
    assert password not in done.stdout + done.stderr
    assert emulator.calls() == [("login", 401)] and list(tmp_path.iterdir()) == []


# --- credentials: which source wins ---------------------------------------------------------------


def test_environment_credentials_win_over_the_default_connection(emulator: Emulator) -> None:
    env = plain_env(emulator) | {CONN_ENV: connection_json(emulator.url, password="not-this-one")}

    assert run("reports", env=env).returncode == 0
    assert emulator.calls()[0] == ("login", 200)


def test_conn_id_wins_over_environment_credentials(emulator: Emulator) -> None:
    env = plain_env(emulator, password="not-this-one") | {CONN_ENV: connection_json(emulator.url)}

    done = run("reports", "--conn-id", "flex_insights_default", env=env)

    assert done.returncode == 0 and emulator.calls()[0] == ("login", 200)


def test_workspace_flag_then_variable_then_connection_extra(emulator: Emulator) -> None:
    connection = {CONN_ENV: connection_json(emulator.url)}  # extra workspace_id: the demo workspace
    variable = {cli.ENV_WORKSPACE: UNKNOWN_WORKSPACE}

    assert run("reports", env=connection).returncode == 0
    assert UNKNOWN_WORKSPACE in run("reports", env=connection | variable).stderr
    assert run("reports", "--workspace", DEMO_WORKSPACE, env=connection | variable).returncode == 0


def test_a_connection_in_the_metadata_database_works(emulator: Emulator, airflow_db: Path) -> None:
    conn_id = f"flex_cli_{uuid.uuid4().hex[:8]}"
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run(
        [airflow, "connections", "add", conn_id, "--conn-json", connection_json(emulator.url)],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )

    done = run("reports", "--conn-id", conn_id, "--json", env={})

    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 7


# --- progress, speed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "seconds", "line"),
    [
        (0, 0.0, "0 B  0 B/s"),
        (512, 1.0, "512 B  512 B/s"),
        (1536, 2.0, "1.5 KiB  768 B/s"),
        (int(12.3 * 2**20), 12.3 / 45.6, "12.3 MiB  45.6 MiB/s"),
        (3 * 2**30, 2.0, "3.0 GiB  1.5 GiB/s"),
    ],
)
def test_progress_line_shows_bytes_and_rate(received: int, seconds: float, line: str) -> None:
    assert cli.format_progress(received, seconds) == line


def test_progress_redraws_in_place_and_ends_with_the_total() -> None:
    ticks = iter(float(t) for t in range(100))
    out = io.StringIO()

    chunks = list(cli.Progress(out, clock=lambda: next(ticks)).track([b"a" * 1024, b"b" * 1024]))

    assert chunks == [b"a" * 1024, b"b" * 1024]
    assert out.getvalue() == "\r1.0 KiB  1.0 KiB/s\r2.0 KiB  1.0 KiB/s\r2.0 KiB  683 B/s  \n"


def test_progress_is_shown_when_stderr_is_a_terminal(emulator: Emulator, tmp_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    try:
        done = run(
            *EXPORT_JANUARY, *FAST, "-o", str(tmp_path / "out.csv"), env=plain_env(emulator), stderr=follower
        )
        os.close(follower)
        shown = _read_all(leader)
    finally:
        os.close(leader)

    assert done.returncode == 0
    assert "\r" in shown and shown.rstrip().endswith("/s")
    assert "1.1 MiB  " in shown  # the whole 1,153,125 bytes


def _read_all(fd: int) -> str:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal's other end is closed
            break
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_the_cli_imports_fast_without_airflow() -> None:
    code = (
        "import sys, airflow_provider_flexinsights.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('airflow.', 'requests', 'aiohttp'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "[]"


def test_help_names_the_commands_credentials_and_exit_codes() -> None:
    done = subprocess.run([FLEX_INSIGHTS, "--help"], capture_output=True, text=True, check=True)

    for text in ("reports", "identifiers", "export", "FLEX_INSIGHTS_EMAIL", "--conn-id", "exit codes"):
        assert text in done.stdout


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig(faults=[Fault("query", status=503, count=1, retry_after="0")])]
)
def test_retries_are_told_on_stderr_and_stdout_stays_json(emulator: Emulator) -> None:
    done = run("reports", "--json", env=airflow_env(emulator))

    assert done.returncode == 0 and len(json.loads(done.stdout)) == 7
    assert done.stderr.startswith(
        f"flex-insights: Flex Insights could not list the reports of workspace {DEMO_WORKSPACE} (HTTP 503"
    )
    assert "retry 1 in 0.0 s" in done.stderr


@pytest.mark.parametrize(  # the other cases: through the operator, which probes alike
    "unwritable_destination", ["parent-is-a-file", "immutable-folder"], indirect=True
)
def test_an_unwritable_destination_exits_2_before_any_request(
    emulator: Emulator, unwritable_destination: Unwritable
) -> None:
    done = run(*EXPORT_JANUARY, *FAST, "-o", str(unwritable_destination.destination), env=plain_env(emulator))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"flex-insights: error: {unwritable_destination.message}\n"
    assert emulator.requests == []


def test_an_unreachable_host_is_one_line_per_retry_then_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], provider_logger: None
) -> None:
    from airflow_provider_flexinsights.library import session
    from airflow_provider_flexinsights.library.backoff import RetryPolicy

    port = closed_port()
    for name, value in plain_env_for(f"http://127.0.0.1:{port}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(session, "DEFAULT_RETRY", RetryPolicy(base_delay=0.0))  # the 5 tries, unwaited

    code = cli.main(["reports"])

    retry = f"flex-insights: Flex Insights could not log in (127.0.0.1:{port} refused the connection); retry"
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        *(f"{retry} {n} in 0.0 s." for n in range(1, 5)),
        f"flex-insights: error: Flex Insights could not log in: 127.0.0.1:{port} refused the connection "
        "(5 tries); check that the host and port are right and that the service is up.",
    ]


# --- --filter: the operator's filter model on the command line -----------------------------------

QUEUE_SALES = '{"identifier": "label.conversations.queue", "in": ["Sales"]}'
VOICE_ONLY = '{"identifier": "label.conversations.channel", "in": ["voice"]}'
LAST_WEEK_FLOATING = '{"type": "floating", "from": -7, "to": -1}'


def test_filters_keep_only_the_rows_asked_for(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "sales-voice.csv"
    args = (*EXPORT_JANUARY, *FAST, "--filter", QUEUE_SALES, "--filter", VOICE_ONLY, "--json")

    done = run(*args, "-o", str(target), env=airflow_env(emulator))

    where = {"Queue": {"Sales"}, "Channel": {"voice"}}
    expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-01-01", "2024-01-31", where=where)
    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == expected and expected.count(b"\r\n") > 10
    assert result["sha256"] == hashlib.sha256(expected).hexdigest()
    assert (result["date_from"], result["date_to"]) == ("2024-01-01", "2024-01-31")
    assert result["filters"] == [json.loads(QUEUE_SALES), json.loads(VOICE_ONLY)]
    sent = emulator.received_filters()[0]
    assert [f["constraint"]["type"] for f in sent] == ["interval", "list", "list"]


@pytest.mark.parametrize("emulator_config", [EmulatorConfig(today=dt.date(2024, 3, 9))])
def test_a_floating_range_replaces_from_and_to(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "last-week.csv"
    args = ("export", "--report", QUEUE_REPORT, *FAST, "--filter", LAST_WEEK_FLOATING, "--json")

    done = run(*args, "-o", str(target), env=plain_env(emulator))

    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-02", "2024-03-08")
    assert (result["date_from"], result["date_to"]) == (None, None)
    assert result["filters"] == [json.loads(LAST_WEEK_FLOATING)]
    assert emulator.received_filters()[0][0]["constraint"] == json.loads(LAST_WEEK_FLOATING)


def test_an_empty_filtered_export_says_which_days(emulator: Emulator, tmp_path: Path) -> None:
    args = ("export", "--report", EMPTY_REPORT, *FAST, "--filter", LAST_WEEK_FLOATING)

    done = run(*args, "-o", str(tmp_path / "empty.csv"), env=plain_env(emulator))

    assert done.returncode == 0
    assert done.stderr == (
        f"Report {EMPTY_REPORT} has no data for days -7..-1 relative to today; wrote an empty file.\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--filter", "{identifier: queue}"), "--filter must be a JSON object like"),
        (("--filter", '{"identifier": "label.conversations.queue", "in": []}'), "filters[0] 'in' is empty"),
        (("--filter", '["Sales"]'), "filters[0] must be a dict, got ['Sales']."),
        (
            ("--filter", '{"type": "floating", "from": -7, "to": -1}'),
            "--filter has a date filter (floating) and --from/--to are set too; give the days one way only.",
        ),
    ],
    ids=["not-json", "empty-values", "not-an-object", "two-date-sources"],
)
def test_bad_filters_exit_2_before_any_request(
    emulator: Emulator, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    done = run(*EXPORT_JANUARY, *args, "-o", str(tmp_path / "out.csv"), env=plain_env(emulator))

    assert done.returncode == 2 and done.stderr.startswith(f"flex-insights: error: {message}")
    assert emulator.requests == []


def test_days_are_required_one_way_or_the_other(emulator: Emulator, tmp_path: Path) -> None:
    args = ("export", "--report", QUEUE_REPORT, "--from", "2024-01-01", "-o", str(tmp_path / "out.csv"))

    done = run(*args, "--filter", QUEUE_SALES, env=plain_env(emulator))

    assert done.returncode == 2 and emulator.requests == []
    assert done.stderr == (
        "flex-insights: error: Give the days: --from and --to (YYYY-MM-DD, both included), or a date "
        """filter such as --filter '{"type": "floating", "from": -7, "to": -1}'.\n"""
    )


def test_an_unknown_filter_value_is_an_api_error_naming_it(emulator: Emulator, tmp_path: Path) -> None:
    nowhere = '{"identifier": "label.conversations.queue", "in": ["Nowhere"]}'

    done = run(
        *EXPORT_JANUARY, *FAST, "--filter", nowhere, "-o", str(tmp_path / "x.csv"), env=plain_env(emulator)
    )

    assert done.returncode == 1 and "Nowhere" in done.stderr and list(tmp_path.iterdir()) == []
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def two_broken_downloads() -> EmulatorConfig:
    return EmulatorConfig(faults=[Fault("export", "truncate", after_bytes=50_000, count=2)])


@pytest.mark.parametrize(
    ("emulator_config", "attempts", "code"),
    [(two_broken_downloads(), "3", 0), (two_broken_downloads(), "2", 1)],  # a config each: faults count down
    ids=["3-attempts-succeed", "2-attempts-fail"],
)
def test_a_broken_download_is_fetched_again_up_to_download_attempts(
    emulator: Emulator, tmp_path: Path, attempts: str, code: int
) -> None:
    """The same mechanism as the operator's (FlexInsightsClient.download): two broken streams."""
    target = tmp_path / "january.csv"

    done = run(
        *EXPORT_JANUARY, *FAST, "--download-attempts", attempts, "-o", str(target), env=plain_env(emulator)
    )

    assert done.returncode == code
    assert done.stderr.count("Downloading it again") == int(attempts) - 1
    if code == 0:
        assert target.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-01-01", "2024-01-31")
    else:
        assert "broke before its end" in done.stderr and list(tmp_path.iterdir()) == []
    assert [e for e, _ in emulator.calls()].count("execute") == 1  # never a second export


@pytest.mark.parametrize(
    ("emulator_config", "code"),
    [
        (EmulatorConfig(pending_polls=2, faults=[Fault("export", "gone", skip=1)]), 0),
        (EmulatorConfig(pending_polls=2, faults=[Fault("export", "gone", skip=1, count=2)]), 1),
    ],
    ids=["gone-once-replaced", "gone-twice-fails"],
)
def test_an_expired_export_is_replaced_once_like_the_operator_does(
    emulator: Emulator, tmp_path: Path, code: int
) -> None:
    """The operator's export job: an export that expires while pending is started again, once."""
    target = tmp_path / "january.csv"

    done = run(*EXPORT_JANUARY, *FAST, "-o", str(target), env=plain_env(emulator))

    assert done.returncode == code, done.stderr
    assert [e for e, _ in emulator.calls()].count("execute") == 2
    if code == 0:
        assert "Starting a new export with the same parameters" in done.stderr
        assert target.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-01-01", "2024-01-31")
    else:
        assert "It was already replaced once in this try; giving up" in done.stderr
        assert list(tmp_path.iterdir()) == []
