"""docs/reliability.md's troubleshooting table says only what is true: every row's quoted message is
matched against what its case really prints.

Each row is run the cheapest real way that shows its message: the ``flex-insights`` CLI in this
process against the emulator (most rows: the CLI says what the operator says), a DAG run through
dag.test() where only the operator says it (its own parameter names, ``on_empty``), and Airflow's
own installed text for the two messages Airflow itself prints. A row without a case fails.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

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
    airflow_connection,
)

from tests.conftest import CONN_ENV, REPO_ROOT, DagRunResult

TABLE = REPO_ROOT / "docs" / "reliability.md"
WRONG_WORKSPACE = "abcdefghijklmnopqrstuvwxyz012345"
W, R = re.escape(DEMO_WORKSPACE), re.escape(QUEUE_REPORT)
DAYS = ("--from", "2024-03-01", "--to", "2024-03-01")
EXPORT = ("export", "--report", QUEUE_REPORT, *DAYS, "--poll-interval", "0.01")
QUEUE = "label.conversations.queue"


@dataclass(frozen=True)
class Case:
    """How to make one row's message. ``values``: each placeholder of the quote (``W``, ``<host>``,
    ``login/password``...) and the regular expression it stands for; ``...`` stands for anything.

    ``cli``: arguments of ``flex-insights`` (``-o`` added for ``export``), with plain FLEX_INSIGHTS_*
    credentials unless ``connection`` (fields over the emulator's connection) makes it
    ``--conn-id flex_row``; ``output`` makes ``export``'s destination in a fresh folder.
    ``operator``: the arguments of a DAG run's export task instead.
    ``airflow_text``: the message as Airflow's own installed code or UI writes it.
    """

    key: str  # a fragment of the row's quote that tells it from the others
    values: dict[str, str] = field(default_factory=dict)
    cli: tuple[str, ...] = ()
    config: EmulatorConfig = field(default_factory=lambda: EmulatorConfig(pending_polls=1))
    password: str = DEMO_PASSWORD
    connection: dict[str, Any] | None = None
    unreachable: bool = False
    no_identifiers: bool = False  # the workspace has none (no date dimension)
    output: Callable[[Path], Path] = lambda folder: folder / "out.csv"  # export's -o, made in tmp_path
    operator: dict[str, Any] | None = None
    airflow_text: Callable[[], str] | None = None


def _scheduler_race_message() -> str:
    """The scheduler's own warning, formatted as it logs it (airflow/jobs/scheduler_job_runner.py)."""
    import airflow.jobs.scheduler_job_runner as scheduler

    source = Path(scheduler.__file__).read_text()
    line = next(line for line in source.splitlines() if "reported that the task instance" in line)
    template = line[line.index('"') + 1 : line.rindex('"')]
    return template % ("LocalExecutor", "<TaskInstance: d.export run [queued]>", "success", "queued")


def _test_connection_refusal() -> str:
    """The UI's notification as the browser test sees it (tests/e2e/test_connection_form.py): the
    title from Airflow's own English UI texts, then the answer's HTTP 400 reason phrase."""
    import airflow

    texts = Path(airflow.__file__).parent / "ui" / "dist" / "i18n" / "locales" / "en" / "admin.json"
    title = json.loads(texts.read_text())["connections"]["testError"]["title"]
    return f"{title}: {HTTPStatus.BAD_REQUEST.phrase}"


def _under_a_file(folder: Path) -> Path:
    (folder / "taken").write_text("a file where a folder should be")
    return folder / "taken" / "out.csv"


def _a_folder(folder: Path) -> Path:
    (folder / "out.csv").mkdir()
    return folder / "out.csv"


CASES = [
    Case("HTTP 401: Bad Login", cli=("reports",), password="not-the-password-42"),
    Case("has no login/password", {"login/password": "login"}, ("reports",), connection={"login": ""}),
    Case(
        "uses plain http://",
        {"<host>": "flex\\.example\\.com"},
        ("reports",),
        connection={"host": "http://flex.example.com"},
    ),
    Case(
        "password in its host",
        cli=("reports",),
        connection={"host": "http://analyst:secret@127.0.0.1:9"},
    ),
    Case("could not start the export", {"R": "999999", "W": W}, ("export", "--report", "999999", *DAYS)),
    Case(
        "does not exist or you have no access",
        {"W": re.escape(WRONG_WORKSPACE)},
        (*EXPORT, "--workspace", WRONG_WORKSPACE),
    ),
    Case(
        "could not find identifier date.date",
        {"W": W},
        EXPORT,
        no_identifiers=True,
    ),
    Case("date_from must be a real date", operator={"date_from": "2024-02-30"}),
    Case(
        "was still computing after N polls",
        {"N": "[0-9]+"},
        (*EXPORT, "--timeout", "0.3"),
        config=EmulatorConfig(pending_polls=10_000),
    ),
    Case("has no data for report R", {"R": re.escape(EMPTY_REPORT)}, operator={"on_empty": "fail"}),
    Case(
        "already replaced once in this try",
        cli=EXPORT,
        config=EmulatorConfig(pending_polls=2, faults=[Fault("export", "gone", skip=1, count=2)]),
    ),
    Case(
        "broke before its end",
        cli=EXPORT,
        config=EmulatorConfig(faults=[Fault("export", "truncate", after_bytes=20_000, count=3)]),
    ),
    Case(
        "refused the connection",
        {"<action>": "log in", "<address>": r"127\.0\.0\.1:[0-9]+"},
        ("reports",),
        unreachable=True,
    ),
    Case(
        "was not found (5 tries)",
        {"<action>": "log in", "<host>": r"flex\.invalid"},
        ("reports",),
        connection={"host": "https://flex.invalid"},
        unreachable=True,
    ),
    Case("is a file, not a folder", {"<path>": ".+", "<folder>": ".+"}, EXPORT, output=_under_a_file),
    Case("it is a folder", {"<path>": ".+"}, EXPORT, output=_a_folder),
    Case(  # sysfs creates no file for anyone: a real refusal, root (as tests run) included
        "may not write in",
        {"<path>": "/sys/.+", "<user>": "[^']+", "<folder>": "/sys"},
        EXPORT,
        output=lambda folder: Path("/sys/flex-insights-test.csv"),
    ),
    Case("filters[0] has", cli=(*EXPORT, "--filter", json.dumps({"identifier": QUEUE, "inn": ["Sales"]}))),
    Case(
        "filters has a date filter (floating)",
        operator={"filters": [{"type": "floating", "from": -7, "to": -1}]},
    ),
    Case(
        "has no value 'X'",
        {"X": "sales", "<identifier>": re.escape(QUEUE), "W": W},
        (*EXPORT, "--filter", json.dumps({"identifier": QUEUE, "in": ["sales"]})),
    ),
    Case(
        "could not find identifier <identifier>",
        {"<identifier>": "label\\.nope\\.nope", "W": W},
        (*EXPORT, "--filter", json.dumps({"identifier": "label.nope.nope", "in": ["a"]})),
    ),
    Case("Test Connection Failed", airflow_text=_test_connection_refusal),
    Case("state attribute is queued", airflow_text=_scheduler_race_message),
]


def table_quotes() -> list[str]:
    """The quoted message of each row of the troubleshooting table."""
    section = TABLE.read_text().split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return [line.split("`")[1] for line in section.splitlines() if line.startswith("| `")]


def case_of(quote: str) -> Case:
    matching = [case for case in CASES if case.key in quote]
    assert len(matching) == 1, f"{len(matching)} cases for the row quoting {quote!r}: give it one"
    return matching[0]


def as_pattern(quote: str, values: dict[str, str]) -> str:
    """The quote as a regular expression: ``...`` is anything; a placeholder (a capital letter
    standing alone, ``<name>``, or any other name ``values`` gives) stands for its value."""
    named = [re.escape(name) for name in values if len(name) > 1 and not name.startswith("<")]
    placeholder = re.compile("|".join([r"\.\.\.", r"<[a-z]+>", r"(?<!\w)[A-Z](?!\w)", *named]))
    parts, last = [], 0
    for token in placeholder.finditer(quote):
        assert token[0] == "..." or token[0] in values, f"no value for {token[0]!r} in {quote!r}"
        parts += [re.escape(quote[last : token.start()]), ".+?" if token[0] == "..." else values[token[0]]]
        last = token.end()
    return "".join([*parts, re.escape(quote[last:])])


def cli_error(
    case: Case,
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> str:
    """Run the CLI in this process; its one ``error:`` line, without the prefix."""
    for variable in (CONN_ENV, cli.ENV_EMAIL, cli.ENV_PASSWORD, cli.ENV_URL, cli.ENV_WORKSPACE):
        monkeypatch.delenv(variable, raising=False)
    url = emulator.url
    if case.unreachable:
        with socket.socket() as probe:  # a loopback port nothing listens on: refused at once
            probe.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        from airflow_provider_flexinsights.library.backoff import RetryPolicy
        from airflow_provider_flexinsights.library.client import FlexInsightsClient

        # every try of the default policy, without its waits (up to 15 s of jitter)
        monkeypatch.setattr(cli, "_client", lambda s: FlexInsightsClient(s, RetryPolicy(base_delay=0.0)))
    arguments = list(case.cli)
    if arguments[0] == "export":
        arguments += ["-o", str(case.output(tmp_path))]
    if case.connection is not None:
        document = {**json.loads(airflow_connection(url)), **case.connection}
        monkeypatch.setenv("AIRFLOW_CONN_FLEX_ROW", json.dumps(document))
        monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")  # the CLI sets it; undone after
        arguments = ["--conn-id", "flex_row", *arguments]
    else:
        for name, value in {
            cli.ENV_EMAIL: DEMO_EMAIL,
            cli.ENV_PASSWORD: case.password,
            cli.ENV_URL: url,
            cli.ENV_WORKSPACE: DEMO_WORKSPACE,
        }.items():
            monkeypatch.setenv(name, value)

    code = cli.main(arguments)

    errors = [
        line for line in capfd.readouterr().err.splitlines() if line.startswith("flex-insights: error: ")
    ]
    assert code in (1, 2) and len(errors) == 1, errors
    return errors[0].removeprefix("flex-insights: error: ")


def task_error(case: Case, emulator: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Run the export task of a DAG through dag.test(); the message its task failed with."""
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv(CONN_ENV, airflow_connection(emulator.url))
    run_export: Callable[..., DagRunResult] = request.getfixturevalue("run_export")
    operator = case.operator or {}
    report = EMPTY_REPORT if operator.get("on_empty") else QUEUE_REPORT
    days = {"date_from": "2024-03-01", "date_to": "2024-03-01"}

    run = run_export(
        **{"report_id": report, **days, **operator}, destination=str(tmp_path / "out.csv"), poll_interval=0.05
    )

    output = request.getfixturevalue("capfd").readouterr().out
    assert run.task_state == "failed"
    raised = re.findall(r"(?m)^[\w.]+(?:Exception|Error): (.*)$", output)  # the traceback's last line
    return raised[-1] if raised else output[-2000:]


@pytest.mark.parametrize(
    "quote", table_quotes(), ids=lambda quote: re.sub(r"\W+", "-", quote)[:60].strip("-")
)
def test_each_troubleshooting_row_quotes_the_message_users_get(
    quote: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    provider_logger: None,
    request: pytest.FixtureRequest,
) -> None:
    case = case_of(quote)

    if case.airflow_text is not None:
        message = case.airflow_text()
    else:
        with Emulator(case.config) as emulator:
            if case.no_identifiers:
                emulator.config.workspaces[DEMO_WORKSPACE].identifiers.clear()
            if case.operator is not None:
                message = task_error(case, emulator, tmp_path, request)
            else:
                message = cli_error(case, emulator, tmp_path, monkeypatch, capfd)

    assert re.match(as_pattern(quote, case.values), message), f"the row says {quote!r}; users get {message!r}"


def test_every_case_has_its_row() -> None:
    quotes = table_quotes()
    assert [case.key for case in CASES if not any(case.key in quote for quote in quotes)] == []
