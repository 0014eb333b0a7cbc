"""The fault matrix: every failure the real API can throw, injected by the emulator, survived or
reported cleanly by the real operator under dag.test().

Every case asserts the same invariants: the task outcome; the file is byte-identical to what the
emulator serves, or absent with no temporary left behind; no SST is left alive; the number of
exports started; and that no password, SST or TT the emulator issued appears in the captured
logs, exception texts, XCom or rendered fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
    EmulatorConfig,
    Fault,
    render_report,
)

from tests.conftest import CONN_ENV, DagRunResult, connection_json, requires_task_state_store, secrets_in

DATES = ("2024-03-01", "2024-03-03")  # three days: about 120 kB, several chunks
EXPECTED = render_report(DEMO_WORKSPACE, QUEUE_REPORT, *DATES)
MID_BODY = 50_000


@dataclass(frozen=True)
class Case:
    name: str
    faults: tuple[Fault, ...] = ()
    outcome: str = "success"
    deferrable: bool = True
    settings: dict[str, Any] = field(default_factory=dict)  # EmulatorConfig fields
    operator: dict[str, Any] = field(default_factory=dict)
    password: str = DEMO_PASSWORD
    executes: int = 1  # exports started ("execute" answered 201)
    logs: tuple[str, ...] = ()  # sentences the task log must contain
    waited: tuple[str, float] | None = None  # (endpoint, seconds): Retry-After honoured there
    check: Callable[[Emulator], None] | None = None


def calls_of(emulator: Emulator, endpoint: str) -> list[int]:
    return [status for e, status in emulator.calls() if e == endpoint]


def token_renewed(emulator: Emulator) -> None:
    assert ("export", 401) in emulator.calls()
    assert len(calls_of(emulator, "token")) > len(calls_of(emulator, "login"))  # a TT re-minted in-session


def logged_in_again(emulator: Emulator) -> None:
    assert calls_of(emulator, "token").count(401) == 1  # the SST was found gone...
    assert calls_of(emulator, "login").count(200) == 4  # ...so one session logged in twice


def downloaded_twice(emulator: Emulator) -> None:
    assert calls_of(emulator, "export").count(200) == 2


def tried_once(emulator: Emulator) -> None:
    assert emulator.calls() == [("login", 401)]


CASES = [
    Case("tt-expiry-mid-poll", (Fault("export", "expire_tt", skip=2),), check=token_renewed),
    Case("tt-expiry-mid-download", (Fault("export", "expire_tt", skip=3),), check=token_renewed),
    Case("sst-expiry", (Fault("export", "expire_sst", skip=1),), check=logged_in_again),
    Case("429-login", (Fault("login", status=429, retry_after="2"),), waited=("login", 2.0)),
    Case("429-execute", (Fault("execute", status=429, retry_after="2"),), waited=("execute", 2.0)),
    Case("429-poll", (Fault("export", status=429, retry_after="2", skip=1),), waited=("export", 2.0)),
    Case("500-login", (Fault("login", status=500),)),
    Case("502-token", (Fault("token", status=502),)),
    Case("503-identifiers", (Fault("identifiers", status=503),)),
    Case("504-execute", (Fault("execute", status=504),)),
    Case("500-poll", (Fault("export", status=500, skip=1),)),
    Case("503-logout", (Fault("logout", status=503),)),
    Case("slow-first-byte", (Fault("export", "delay", seconds=2.0, skip=1),)),
    Case(
        "reset-mid-download",
        (Fault("export", "reset", after_bytes=MID_BODY),),
        deferrable=False,
        logs=("broke before its end", "Downloading it again (2 of 3)"),
        check=downloaded_twice,
    ),
    Case(
        "truncated-body",
        (Fault("export", "truncate", after_bytes=MID_BODY),),
        deferrable=False,
        logs=("broke before its end",),
        check=downloaded_twice,
    ),
    Case(
        "reset-every-download",
        (Fault("export", "reset", after_bytes=MID_BODY, count=99),),
        outcome="failed",
        deferrable=False,
        logs=("The download of Flex Insights export", "broke before its end"),
    ),
    Case(
        "export-gone-while-pending",
        (Fault("export", "gone", skip=1),),
        executes=2,
        logs=("HTTP 410", "Starting a new export with the same parameters"),
    ),
    Case(
        "export-gone-after-ready",
        (Fault("export", "gone", skip=3),),
        executes=2,
        logs=("Starting a new export with the same parameters",),
    ),
    Case(
        "export-gone-twice",
        (Fault("export", "gone", skip=1, count=2),),
        outcome="failed",
        executes=2,
        logs=("It was already replaced once in this try; giving up",),
    ),
    Case(
        "never-ready",
        settings={"pending_polls": 1_000_000},
        operator={"timeout": 2},
        outcome="failed",
        logs=("was still computing after", "allow more time (the operator's timeout"),
    ),
    Case(
        "bad-password",
        password="not-the-password",
        outcome="failed",
        executes=0,
        logs=("Flex Insights could not log in (HTTP 401: Bad Login or Password!)",),
        check=tried_once,
    ),
    Case(
        "unknown-report",
        operator={"report_id": "999999"},
        outcome="failed",
        executes=0,
        logs=(f"Object /gdc/md/{DEMO_WORKSPACE}/obj/999999 not found",),
    ),
    Case(
        "unknown-identifier",
        settings={"identifiers": set()},
        outcome="failed",
        executes=0,
        logs=(f"could not find identifier date.date.mmddyyyy in workspace {DEMO_WORKSPACE}",),
    ),
]


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    chosen: Case = getattr(request, "param", Case("no fault"))
    return chosen


@pytest.fixture
def emulator_config(case: Case) -> EmulatorConfig:
    config = EmulatorConfig(pending_polls=2, faults=[Fault(**vars(f)) for f in case.faults])
    for name, value in case.settings.items():
        if name == "identifiers":
            config.workspaces[DEMO_WORKSPACE].identifiers = value
        else:
            setattr(config, name, value)
    return config


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES], indirect=True)
def test_fault(
    case: Case,
    run_export: Callable[..., DagRunResult],
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url, password=case.password))
    exports = tmp_path / "exports"
    destination = exports / "queue.csv"

    run = run_export(
        **{
            "report_id": QUEUE_REPORT,
            "date_from": DATES[0],
            "date_to": DATES[1],
            "destination": str(destination),
            "deferrable": case.deferrable,
            "poll_interval": 0.05,
            "max_poll_interval": 0.2,
            **case.operator,
        }
    )
    output = capfd.readouterr().out

    assert run.task_state == case.outcome, output[-3000:]
    if case.outcome == "success":
        assert hashlib.sha256(destination.read_bytes()).hexdigest() == hashlib.sha256(EXPECTED).hexdigest()
        assert run.result is not None and run.result["sha256"] == hashlib.sha256(EXPECTED).hexdigest()
        assert sorted(p.name for p in exports.iterdir()) == ["queue.csv"]
    else:
        assert not exports.exists() or list(exports.iterdir()) == []  # no file, no temporary
    assert emulator.live_sessions == 0
    assert calls_of(emulator, "execute").count(201) == case.executes
    assert len(calls_of(emulator, "export")) <= 40
    for sentence in case.logs:
        assert sentence in output
    if case.waited is not None:
        endpoint, seconds = case.waited
        same = [r for r in emulator.requests if r.endpoint == endpoint]
        limited = next(i for i, r in enumerate(same) if r.status == 429)
        assert same[limited + 1].at - same[limited].at >= seconds
    if case.check is not None:
        case.check(emulator)
    leaks = [output, str(run.result), *rendered_fields(run.dag_id)]
    assert all(secrets_in(text, emulator) == [] and case.password not in text for text in leaks)


def rendered_fields(dag_id: str) -> list[str]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id).all()
        return [str(row.rendered_fields) for row in rows]


IN_WORKER: dict[str, Any] = {
    "report_id": QUEUE_REPORT,
    "date_from": DATES[0],
    "date_to": DATES[1],
    "deferrable": False,
    "poll_interval": 0.05,
}


@pytest.mark.parametrize(
    "emulator_config",
    [EmulatorConfig(pending_polls=1, faults=[Fault("export", "reset", after_bytes=MID_BODY, count=3)])],
)
@requires_task_state_store
def test_a_task_retry_reuses_the_export_instead_of_running_the_report_again(
    run_export: Callable[..., DagRunResult], flex_connection: str, emulator: Emulator, tmp_path: Path
) -> None:
    destination = tmp_path / "queue.csv"

    run = run_export(
        **IN_WORKER,
        destination=str(destination),
        retries=1,
        retry_delay=0,  # the first try's three downloads all break; the retry's succeeds
    )

    assert run.task_state == "success"
    assert destination.read_bytes() == EXPECTED
    assert calls_of(emulator, "execute") == [201]  # one export for both tries
    assert calls_of(emulator, "login") == [200, 200]  # two tries, two sessions
    assert emulator.live_sessions == 0


def clear_and_run_again(airflow_db: Path, dag_id: str) -> str:
    """Clear the finished task as the UI's Clear does (Airflow's clear_task_instances), then do what
    the scheduler and dag.test's loop do: run the dag run, schedule the task's next try and run it
    (with the helper ``airflow tasks test`` uses too). Returns the task's state."""
    from airflow import settings
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.state import DagRunState, TaskInstanceState

    from tests.conftest import dag_bag

    dag = dag_bag(airflow_db / "dags" / f"{dag_id}.py").get_dag(dag_id)
    session = settings.Session()
    try:
        clear_task_instances(session.query(TaskInstance).filter_by(dag_id=dag_id).all(), session)
        session.commit()
        (ti,) = session.query(TaskInstance).filter_by(dag_id=dag_id).all()
        ti.dag_run.state = DagRunState.RUNNING
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        session.expire_all()
        return str(session.query(TaskInstance).filter_by(dag_id=dag_id).one().state)
    finally:
        session.close()


@requires_task_state_store
def test_a_cleared_task_starts_a_new_export(
    run_export: Callable[..., DagRunResult],
    airflow_db: Path,
    flex_connection: str,
    emulator: Emulator,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A user clears a successful task to get fresh data: the task state store survives the clear
    (apache/airflow#72100), but the export it holds belongs to the round of tries before it."""
    destination = tmp_path / "queue.csv"
    run = run_export(**IN_WORKER, destination=str(destination), retries=2)
    assert run.task_state == "success" and calls_of(emulator, "execute") == [201]
    destination.unlink()

    assert clear_and_run_again(airflow_db, run.dag_id) == "success"
    assert calls_of(emulator, "execute") == [201, 201]  # a second export, not the first one again
    assert "The export of an earlier try predates a clear of the task" in capfd.readouterr().out
    assert destination.read_bytes() == EXPECTED


def test_concurrent_requests_of_one_session_share_one_token_renewal(
    flex_connection: str, emulator: Emulator
) -> None:
    import asyncio

    from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsAsyncHook, FlexInsightsHook

    with FlexInsightsHook().session() as client:
        uris = [client.start_export(DEMO_WORKSPACE, QUEUE_REPORT, *DATES) for _ in range(10)]
    emulator.clear_requests()

    async def poll_all_twice() -> None:
        async with FlexInsightsAsyncHook().session() as async_client:
            await asyncio.gather(*(async_client.check_export(uri) for uri in uris))
            emulator.expire_temporary_tokens()
            await asyncio.gather(*(async_client.check_export(uri) for uri in uris))

    asyncio.run(poll_all_twice())

    assert calls_of(emulator, "login") == [200]  # ten concurrent first requests, one login
    assert calls_of(emulator, "token") == [200, 200]  # one TT, then one renewal for ten 401s
    assert calls_of(emulator, "export").count(401) == 10
    assert emulator.live_sessions == 0
