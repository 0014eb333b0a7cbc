"""On a real scheduler + triggerer: a pending export is waited out in the triggerer, not a worker."""

from __future__ import annotations

import time
from pathlib import Path

from airflow_provider_flexinsights.emulator import DEMO_WORKSPACE, QUEUE_REPORT, Emulator, render_report

from tests.e2e.deployment import AirflowDeployment, wait_until


def test_pending_export_defers_and_holds_no_worker(
    deployment: AirflowDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 20
    destination = tmp_path / "deferred.csv"
    conf = {"date_from": "2024-03-01", "date_to": "2024-03-03", "destination": str(destination)}

    run_id = deployment.trigger("e2e_export", "2024-03-04", conf)
    (ti,) = wait_until(
        lambda: [t for t in deployment.task_instances("e2e_export", run_id) if t["state"] == "deferred"],
        timeout=120,
        what="the export task to be deferred",
    )
    # Airflow's supervisor takes a few seconds to wind down after a task defers (seen with its own
    # DateTimeSensorAsync too); after that, nothing may hold the task until the trigger fires.
    wait_until(lambda: not deployment.processes_for(ti["id"]), timeout=20, what="the worker to let go")
    deferred_samples = 0
    while deployment.task_instances("e2e_export", run_id)[0]["state"] == "deferred":
        assert deployment.processes_for(ti["id"]) == [], "a process still works on the deferred task"
        deferred_samples += 1
        time.sleep(1)
    state = deployment.wait_for_run("e2e_export", run_id)

    assert state == "success"
    assert deferred_samples >= 5  # the check above really ran while the task waited
    assert destination.read_bytes() == render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-03")
    exports = [r for r in emulator.requests if r.endpoint == "export"]
    assert [r.endpoint for r in emulator.requests].count("execute") == 1
    assert len(exports) <= 15
    waits = [r for r in exports if r.status == 202]
    assert waits[0].user_agent.endswith("(requests)")  # the worker's one poll before deferring
    assert all(r.user_agent.endswith("(aiohttp)") for r in waits[1:])  # then only the triggerer
    assert exports[-1].status == 200 and exports[-1].user_agent.endswith("(requests)")  # the download
    assert emulator.live_sessions == 0
