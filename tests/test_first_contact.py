"""What a new user meets first: the demo's and the emulator's arguments, checked before anything
starts, each mistake one line on stderr (no traceback, no usage block); messages that read right."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_flexinsights.emulator import Emulator
from airflow_provider_flexinsights.library.exceptions import FlexInsightsInputError
from airflow_provider_flexinsights.library.filters import parse_filters
from airflow_provider_flexinsights.library.validation import connection_settings

from tests.conftest import REPO_ROOT, connection_json

EMULATOR = [sys.executable, "-m", "airflow_provider_flexinsights.emulator"]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False, env=os.environ.copy()
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("date", ["2024-13-45", "2024-02-30", "yesterday"])
def test_the_demo_refuses_an_impossible_date_in_one_line_before_airflow_starts(date: str) -> None:
    result = run([sys.executable, str(REPO_ROOT / "scripts" / "run_demo.py"), "--date", date])

    assert result.returncode == 2
    assert one_line(result) == (
        f"demo: argument --date: '{date}' is not a real date written YYYY-MM-DD"
        " (see ./scripts/demo.sh --help)"
    )
    assert result.stdout == ""  # nothing ran: no "Emulator on ..." line


def test_the_emulator_on_a_port_in_use_says_so_in_one_line() -> None:
    with Emulator() as taken:
        port = taken.url.rsplit(":", 1)[1]
        result = run([*EMULATOR, "--port", port])

    assert result.returncode == 1
    assert one_line(result) == (
        f"The emulator cannot listen on 127.0.0.1:{port}: Address already in use; "
        "pick another --port (0 picks a free one) or --host."
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--port", "70000"], "argument --port: must be from 0 to 65535, not 70000"),
        (["--port", "http"], "argument --port: 'http' is not a whole number"),
        (["--pending-polls", "-1"], "argument --pending-polls: must be 0 or more, not -1"),
        (["--tt-ttl", "0"], "argument --tt-ttl: must be 1 or more, not 0"),
        (["--pending-range", "5", "1"], "--pending-range MIN (5) is above MAX (1)"),
        (["--today", "2024-13-45"], "argument --today: invalid fromisoformat value: '2024-13-45'"),
    ],
)
def test_the_emulator_refuses_bad_arguments_in_one_line(arguments: list[str], message: str) -> None:
    result = run([*EMULATOR, *arguments])

    assert result.returncode == 2
    assert one_line(result) == f"python -m airflow_provider_flexinsights.emulator: {message} (see --help)"


def test_the_emulator_with_good_arguments_still_prints_its_json_line() -> None:
    process = subprocess.Popen(
        [*EMULATOR, "--port", "0", "--pending-range", "0", "1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert ready["url"].startswith("http://127.0.0.1:")


def test_a_misspelt_filter_key_is_one_sentence() -> None:
    with pytest.raises(FlexInsightsInputError) as raised:
        parse_filters([{"identifier": "label.conversations.queue", "inn": ["Sales"]}])

    assert str(raised.value) == (
        "filters[0] has unknown key 'inn' (did you mean 'in'?); "
        "an attribute filter takes identifier, in, not_in."
    )


def test_a_bad_workspace_in_the_connection_extra_reads_as_a_sentence() -> None:
    with pytest.raises(FlexInsightsInputError) as raised:
        connection_settings(
            "flex_badws", host=None, port=None, login="a@b.c", password="pw", extra={"workspace_id": "nope"}
        )

    assert str(raised.value).startswith(
        "The extra workspace_id of the Flex Insights connection 'flex_badws' must be the 32 lowercase"
    )


def test_the_cli_calls_its_url_variable_a_variable_not_a_connection() -> None:
    environment = {
        **os.environ,
        "FLEX_INSIGHTS_URL": "ftp://example.com",
        "FLEX_INSIGHTS_EMAIL": "a@b.c",
        "FLEX_INSIGHTS_PASSWORD": "pw",
    }
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_flexinsights", "reports", "--workspace", "a" * 32],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )

    assert result.returncode == 2
    assert one_line(result) == (
        "flex-insights: error: FLEX_INSIGHTS_URL has host 'ftp://example.com': "
        "use a URL like https://analytics.ytica.com."
    )


def test_airflow_connections_test_with_a_bad_password_shows_the_request_id(
    airflow_db: Path, emulator: Emulator
) -> None:
    """Airflow's CLI prints through rich, which took a ``[request id ...]`` for markup and left " ."."""
    environment = {
        **os.environ,
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW_CONN_FLEX_BAD": connection_json(emulator.url, password="wrong"),
    }
    result = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "connections", "test", "flex_bad"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )

    assert re.search(
        r"Flex Insights could not log in \(HTTP 401: Bad Login or Password!\) \(request id emu-\S+\)\. "
        r"Check the email \(login\) and password of the Flex Insights connection;",
        result.stdout,
    ), result.stdout + result.stderr


def quick_start() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    return readme[readme.index("## Quick start") : readme.index("## Compatibility")]


def test_the_quick_start_dag_is_the_example_file_it_names() -> None:
    step = quick_start().split("3. Write a DAG", 1)[1]
    block = textwrap.dedent(step.split("```python\n", 1)[1].split("```", 1)[0])

    assert "example_dags/flex_insights_daily_export.py" in step.splitlines()[0]
    assert (REPO_ROOT / "example_dags" / "flex_insights_daily_export.py").read_text().endswith(block)


def test_the_quick_start_connection_has_a_host_and_the_database_is_migrated_first() -> None:
    text = quick_start()
    exported = text.split("AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT='", 1)[1].split("'", 1)[0]

    assert json.loads(exported)["host"] == "https://analytics.ytica.com"
    assert text.index("airflow db migrate") < text.index("airflow dags test flex_insights_daily_export")


@pytest.mark.parametrize(
    "arguments", [["--conn-id", "flex_mine", "reports"], ["reports", "--conn-id", "flex_mine"]]
)
def test_the_cli_takes_its_global_options_before_or_after_the_command(
    airflow_db: Path, emulator: Emulator, arguments: list[str]
) -> None:
    environment = {**os.environ, "AIRFLOW_CONN_FLEX_MINE": connection_json(emulator.url)}
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_flexinsights", *arguments, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )

    assert result.returncode == 0, result.stderr
    assert "3035643" in {str(report["id"]) for report in json.loads(result.stdout)}
