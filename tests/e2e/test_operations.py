"""On a real deployment: triggerer restarts, backfills, mapped exports, tasks failed while deferred."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_flexinsights.emulator import (
    AGENT_REPORT,
    CHANNEL_REPORT,
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
    render_report,
)

from tests.e2e.deployment import AirflowDeployment, wait_until
from tests.e2e.scenarios import asset_pipeline, backfill_seven_days


def export_conf(tmp_path: Path, name: str = "export.csv") -> dict[str, str]:
    return {"date_from": "2024-03-01", "date_to": "2024-03-02", "destination": str(tmp_path / name)}


def wait_for_deferred_polling(deployment: AirflowDeployment, emulator: Emulator, run_id: str) -> None:
    """Until the task is deferred and the trigger has polled at least once."""
    wait_until(
        lambda: (
            deployment.task_instances("e2e_export", run_id)[0]["state"] == "deferred"
            and any(r.endpoint == "export" and r.user_agent.endswith("(aiohttp)") for r in emulator.requests)
        ),
        timeout=120,
        what="the trigger to be polling",
    )


def test_triggerer_killed_while_polling_resumes_the_same_export(
    deployment: AirflowDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 30
    conf = export_conf(tmp_path)
    run_id = deployment.trigger("e2e_export", "2024-03-03", conf)
    wait_for_deferred_polling(deployment, emulator, run_id)

    deployment.stop("triggerer", kill=True)  # SIGKILL: no cleanup, as in a crash
    polls_before_restart = len(emulator.requests)
    deployment.start("triggerer")
    state = deployment.wait_for_run("e2e_export", run_id, timeout=240)

    assert state == "success"
    assert Path(conf["destination"]).read_bytes() == render_report(
        DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-02"
    )
    assert [r.endpoint for r in emulator.requests].count("execute") == 1
    polled = {r.path for r in emulator.requests if r.endpoint == "export"}
    assert len(polled) == 1  # before and after the restart: the one export URI
    resumed = [r for r in emulator.requests[polls_before_restart:] if r.endpoint == "export"]
    assert any(r.user_agent.endswith("(aiohttp)") for r in resumed)  # a new triggerer polled it
    # The SIGKILLed trigger could not log out: its SST is the one left, until it expires.
    assert emulator.live_sessions == 1
    emulator.expire_sessions()


def test_backfill_of_seven_days_writes_seven_files_with_their_own_dates(
    deployment: AirflowDeployment, emulator: Emulator
) -> None:
    backfill_seven_days(deployment, emulator)


def test_mapped_export_writes_one_file_per_report_with_bounded_logins(
    deployment: AirflowDeployment, emulator: Emulator
) -> None:
    dag_id = "flex_insights_mapped_export"
    # An export ready within seconds of deferring can hit Airflow 3.3's stale-executor-event race
    # (apache/airflow#72716): the resumed task is killed as "state changed externally" and retried
    # 5 minutes later. Real exports take longer than that hand-off; so do these.
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 10
    deployment.unpause_and_settle(dag_id)
    emulator.clear_requests()

    run_id = deployment.trigger(dag_id, "2024-03-02")
    state = deployment.wait_for_run(dag_id, run_id, timeout=300)

    assert state == "success"
    mapped = deployment.task_instances(dag_id, run_id)
    assert [t["map_index"] for t in mapped] == [0, 1, 2]
    for report_id in (QUEUE_REPORT, AGENT_REPORT, CHANNEL_REPORT):
        written = deployment.home / "exports" / "mapped" / report_id / "2024-03-01.csv"
        assert written.read_bytes() == render_report(DEMO_WORKSPACE, report_id, "2024-03-01", "2024-03-01")
    logins = [r for r in emulator.requests if r.endpoint == "login"]
    assert all(r.status == 200 for r in logins)
    # per mapped task: one login to start the export and one to download it...
    assert sum(r.user_agent.endswith("(requests)") for r in logins) == 6
    # ...and the triggerer's shared session: one login while any of the three waits
    assert 1 <= sum(r.user_agent.endswith("(aiohttp)") for r in logins) <= 3
    assert [e for e, _ in emulator.calls()].count("execute") == 3
    assert emulator.live_sessions == 0


def test_task_failed_while_deferred_leaves_no_file_and_no_live_session(
    deployment: AirflowDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 600
    conf = export_conf(tmp_path, "never.csv")
    run_id = deployment.trigger("e2e_export", "2024-03-05", conf)
    wait_for_deferred_polling(deployment, emulator, run_id)
    assert emulator.live_sessions == 1  # the trigger's session, polling

    deployment.set_task_state("e2e_export", run_id, "export", "failed")

    wait_until(lambda: emulator.live_sessions == 0, timeout=60, what="the trigger to log out")
    assert deployment.task_instances("e2e_export", run_id)[0]["state"] == "failed"
    assert list(tmp_path.iterdir()) == []  # no file, no temporary
    assert emulator.calls()[-1] == ("logout", 204)


def test_a_fresh_export_schedules_the_asset_consumer_with_the_file_it_wrote(
    deployment: AirflowDeployment, emulator: Emulator
) -> None:
    asset_pipeline(deployment, emulator)
