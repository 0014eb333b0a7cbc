"""On a distributed Airflow: CeleryExecutor, PostgreSQL, Redis, two workers, two triggerers.

One deployment serves the whole module (starting it costs about a minute). Each test leaves it
whole: what a test kills is started again when the test ends, pass or fail. Figures each proof
measured (logins, exports, adoption delay) are printed: ``pytest -rP`` or ``-s`` shows them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_provider_flexinsights.emulator import (
    DEMO_WORKSPACE,
    QUEUE_REPORT,
    Emulator,
    Fault,
    RequestRecord,
    render_report,
)
from airflow_provider_flexinsights.emulator.postgres import PostgresServer

from tests.conftest import AIRFLOW_VERSION
from tests.e2e.deployment import CeleryDeployment, deployed, wait_until
from tests.e2e.scenarios import PARTITIONED_DAG, asset_pipeline, backfill_seven_days

TWENTY = "e2e_twenty_exports"
# Runs of the twenty exports in the compressed day (CI: 4, 80 exports; by hand, more: see the test)
DAY_RUNS = int(os.environ.get("FLEX_INSIGHTS_DAY_RUNS", "4"))
requires_partitions = pytest.mark.skipif(AIRFLOW_VERSION < (3, 2), reason="Airflow < 3.2 has no partitions.")
DAYS = [dt.date(2024, 2, 1) + dt.timedelta(days=n) for n in range(20)]  # tests/e2e/dags/e2e_distributed.py


@pytest.fixture(scope="module")
def celery(
    shared_emulator: Emulator, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryDeployment]:
    home = tmp_path_factory.mktemp("airflow-celery")
    with deployed(CeleryDeployment, home, shared_emulator.url, postgres_server) as airflow:
        yield airflow


def exports_started(emulator: Emulator) -> Counter[str]:
    """How many exports were started for each day (each item of the twenty exports its own day)."""
    return Counter(
        f["constraint"]["from"]
        for r in emulator.requests
        if r.endpoint == "execute"
        for f in r.body["report_req"]["context"]["filters"]
    )


def logins_by(emulator: Emulator) -> dict[str, int]:
    """Logins from workers (the requests transport) and from triggerers (the async one)."""
    logins = [r for r in emulator.requests if r.endpoint == "login"]
    assert all(r.status == 200 for r in logins)
    by_workers = sum(from_worker(r.user_agent) for r in logins)
    return {"workers": by_workers, "triggerers": len(logins) - by_workers}


def from_worker(user_agent: str) -> bool:
    return user_agent.endswith("(requests)")


def is_worker_download(request: RequestRecord) -> bool:
    return request.endpoint == "export" and request.status == 200 and from_worker(request.user_agent)


def trigger_holders(celery: CeleryDeployment, run_id: str) -> dict[int, str]:
    """Map index -> host name of the triggerer holding that task's trigger, for the deferred tasks."""
    rows = celery.query(
        "SELECT ti.map_index, job.hostname FROM task_instance ti"
        " JOIN trigger ON trigger.id = ti.trigger_id JOIN job ON job.id = trigger.triggerer_id"
        " WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.state = 'deferred'",
        TWENTY,
        run_id,
    )
    return {int(r["map_index"]): str(r["hostname"]) for r in rows}


def assert_twenty_files_whole(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{day}.csv" for day in DAYS)  # no temporary
    for day in DAYS:
        expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, day.isoformat(), day.isoformat())
        assert (folder / f"{day}.csv").read_bytes() == expected, day


def report(**figures: Any) -> None:
    print("measured:", ", ".join(f"{name}={value}" for name, value in figures.items()))


def test_twenty_mapped_exports_spread_over_both_workers_and_both_triggerers(
    celery: CeleryDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 15  # every item defers
    run_id = celery.trigger(TWENTY, "2024-03-01", {"folder": str(tmp_path)})

    holders: dict[int, str] = {}  # sampled while the tasks wait: a trigger lives for about 15 s
    while celery.run_state(TWENTY, run_id) not in ("success", "failed"):
        holders.update(trigger_holders(celery, run_id))
        time.sleep(0.5)
    tasks = celery.task_instances(TWENTY, run_id)
    workers = Counter(
        r["hostname"] for r in celery.query("SELECT hostname FROM task_instance WHERE run_id = ?", run_id)
    )
    logins = logins_by(emulator)
    exports = sum(exports_started(emulator).values())
    report(workers=dict(workers), triggerers=dict(Counter(holders.values())), logins=logins, exports=exports)

    assert celery.run_state(TWENTY, run_id) == "success"
    assert [(t["state"], t["try_number"]) for t in tasks] == [("success", 1)] * 20
    assert_twenty_files_whole(tmp_path)
    assert exports_started(emulator) == Counter({day.isoformat(): 1 for day in DAYS})
    assert set(workers) == set(CeleryDeployment.WORKERS)
    assert len(holders) == 20 and set(holders.values()) == set(CeleryDeployment.TRIGGERERS)
    # a worker logs in to start an export and again to download it: two per item...
    assert logins["workers"] == 2 * 20
    # ...while each triggerer shares one session among all the triggers it runs
    assert len(CeleryDeployment.TRIGGERERS) <= logins["triggerers"] <= 2 * len(CeleryDeployment.TRIGGERERS)
    assert emulator.live_sessions == 0


def test_the_busiest_triggerer_killed_its_triggers_are_adopted_and_no_export_starts_twice(
    celery: CeleryDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    # each export is ready 30 s after it started: after half the tasks have deferred (10-15 s in)
    # and the adoption (under 10 s after the kill), so adopted triggers are seen waiting
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 30
    run_id = celery.trigger(TWENTY, "2024-03-02", {"folder": str(tmp_path)})
    triggered_at = time.monotonic()
    holders = wait_until(
        lambda: (held := trigger_holders(celery, run_id)) and len(held) >= 10 and held,
        timeout=180,
        what="half the tasks to be deferred",
    )
    busiest, held = Counter(holders.values()).most_common(1)[0]
    survivor = next(t for t in CeleryDeployment.TRIGGERERS if t != busiest)
    orphans = {index for index, holder in holders.items() if holder == busiest}
    try:
        celery.stop(busiest, kill=True)  # SIGKILL: no cleanup, as in a crash
        killed_at = time.monotonic()
        half_deferred_s = killed_at - triggered_at

        def adopted() -> bool:
            now_held = trigger_holders(celery, run_id)
            return all(now_held.get(i) == survivor for i in orphans if i in now_held) and bool(
                orphans & set(now_held)
            )

        wait_until(adopted, timeout=120, what=f"{survivor} to adopt the triggers of {busiest}", interval=0.2)
        adoption_delay = time.monotonic() - killed_at
        state = celery.wait_for_run(TWENTY, run_id, timeout=300)
        report(
            half_deferred_s=round(half_deferred_s, 1),
            killed=busiest,
            held=held,
            deferred=len(holders),
            adoption_s=round(adoption_delay, 1),
            exports=sum(exports_started(emulator).values()),
            logins=logins_by(emulator),
        )

        assert state == "success"
        assert [t["state"] for t in celery.task_instances(TWENTY, run_id)] == ["success"] * 20
        assert_twenty_files_whole(tmp_path)
        assert exports_started(emulator) == Counter({day.isoformat(): 1 for day in DAYS})
        # none left but, at most, the one shared session of the killed triggerer (it cannot log out)
        assert emulator.live_sessions <= 1
    finally:
        emulator.expire_sessions()
        celery.restart(busiest)


def test_a_worker_killed_mid_download_the_retry_on_the_other_reuses_the_export(
    celery: CeleryDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    dag_id = "e2e_export_retried"
    emulator.config.pending_polls, emulator.config.pending_seconds = 0, 5
    # The worker's first download sends 50 kB of the CSV, then nothing for two minutes: a slow
    # download. (Skipped: the trigger's poll that finds the export ready, answered with the CSV too.)
    emulator.config.faults.append(Fault("export", "stall", after_bytes=50_000, seconds=120, skip=1))
    conf = {"date_from": "2024-03-01", "date_to": "2024-03-03", "destination": str(tmp_path / "slow.csv")}
    run_id = celery.trigger(dag_id, "2024-03-04", conf)
    deferred_on: set[str] = set()  # the worker that started the export, seen while the task waits

    def download_started() -> RequestRecord | None:
        tasks = celery.task_instances(dag_id, run_id)
        deferred_on.update(t["hostname"] for t in tasks if t["state"] == "deferred")
        return next((r for r in emulator.requests if is_worker_download(r)), None)

    download = wait_until(download_started, timeout=180, what="the worker's download to start", interval=0.2)
    # The downloader is the process holding the stalled download's connection, on whichever worker
    # (the worker that started the export before the task deferred may be the other one).
    emulator_port = int(emulator.url.rsplit(":", 1)[1])
    downloading_on, downloader = wait_until(
        lambda: celery.worker_connected_from(download.client_port, emulator_port),
        timeout=10,
        what=f"the process connected from port {download.client_port}",
    )
    other = next(w for w in CeleryDeployment.WORKERS if w != downloading_on)
    (task,) = celery.task_instances(dag_id, run_id)
    # the metadata database agrees: the try that deferred was resumed there and runs now
    assert (task["state"], task["try_number"], task["hostname"]) == ("running", 1, downloading_on)
    partial = wait_until(lambda: list(tmp_path.glob(".slow.csv.*.part")), timeout=10, what="the temporary")
    try:
        celery.stop(downloading_on, kill=True)  # the worker and its task processes: a lost machine
        for straggler in celery.processes_for(task["id"]):  # one a Celery pool process let go of
            straggler.kill()
        wait_until(lambda: not celery.processes_for(task["id"]), timeout=10, what="the task processes to die")
        assert not downloader.is_running()
        killed_at = time.monotonic()
        state = celery.wait_for_run(dag_id, run_id, timeout=300)
        retried_after = time.monotonic() - killed_at
        tries = celery.query(  # each try has its own id: find them by run
            "SELECT try_number, hostname, state FROM task_instance_history WHERE dag_id = ? AND run_id = ?"
            " UNION ALL SELECT try_number, hostname, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
            " ORDER BY try_number",
            dag_id,
            run_id,
            dag_id,
            run_id,
        )
        downloads = [r for r in emulator.requests if r.endpoint == "export" and r.status == 200]
        written = (tmp_path / "slow.csv").read_bytes()
        report(
            deferred_on=sorted(deferred_on),
            killed=downloading_on,
            tries=[(t["try_number"], t["hostname"], t["state"]) for t in tries],
            exports=[r.endpoint for r in emulator.requests].count("execute"),
            logins=logins_by(emulator),
            done_after_kill_s=round(retried_after, 1),
            sha256=hashlib.sha256(written).hexdigest()[:16],
        )

        assert state == "success"
        assert [(t["try_number"], t["hostname"]) for t in tries] == [(1, downloading_on), (2, other)]
        assert [r.endpoint for r in emulator.requests].count("execute") == 1  # the retry reused it
        assert len({r.path for r in emulator.requests if r.endpoint == "export"}) == 1
        # the trigger's poll that found it ready, the download the kill cut off, and the retry's
        assert [from_worker(r.user_agent) for r in downloads] == [False, True, True]
        assert downloads[1] == download and downloads[2].client_port != download.client_port
        expected = render_report(DEMO_WORKSPACE, QUEUE_REPORT, "2024-03-01", "2024-03-03")
        assert written == expected
        # nothing partial left: the temporary the killed download was writing is gone too
        assert not partial[0].exists() and [p.name for p in tmp_path.iterdir()] == ["slow.csv"]
    finally:
        emulator.expire_sessions()  # the killed worker's session could not log out
        celery.restart(downloading_on)


@requires_partitions
def test_backfill_of_seven_partitions_with_three_runs_at_most_at_once(
    celery: CeleryDeployment, emulator: Emulator
) -> None:
    """The partitioned DAG (Airflow 3.2+): one run per day's key, each exporting its own day; the
    data-interval backfill is proved on the LocalExecutor deployment (tests/e2e/test_operations.py)."""
    peak = backfill_seven_days(celery, emulator, max_active_runs=3, dag_id=PARTITIONED_DAG)
    workers = celery.query(
        "SELECT DISTINCT hostname FROM task_instance WHERE dag_id = ? AND run_id LIKE 'backfill%'",
        PARTITIONED_DAG,
    )
    report(backfill_peak_runs=peak, workers=sorted(r["hostname"] for r in workers))

    assert peak >= 2  # runs overlapped: the limit was what held them, not the executor


def test_the_asset_pipeline_runs_on_the_distributed_deployment(
    celery: CeleryDeployment, emulator: Emulator
) -> None:
    asset_pipeline(celery, emulator)


def triggerer_figures(celery: CeleryDeployment, emulator_port: int) -> dict[str, tuple[float, int]]:
    """Per triggerer: the RSS of its processes (the triggerer and its trigger runner), in MB, and
    their TCP connections to the emulator."""
    figures = {}
    for name in CeleryDeployment.TRIGGERERS:
        root = psutil.Process(celery.processes[name].pid)
        tree = [root, *root.children(recursive=True)]
        rss = sum(p.memory_info().rss for p in tree) / 2**20
        connections = sum(
            1
            for p in tree
            for c in p.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == emulator_port and c.status == psutil.CONN_ESTABLISHED
        )
        figures[name] = (rss, connections)
    return figures


def test_a_compressed_day_leaves_every_triggerer_flat(
    celery: CeleryDeployment, emulator: Emulator, tmp_path: Path
) -> None:
    """Runs of the twenty exports, all at once, with TTs that last 2 s instead of 10 minutes: each
    triggerer renews its shared session's TT every 2 s of waiting. Its memory must not climb with
    the renewals, its connections must end with its sessions, and no SST may outlive the day.
    ``FLEX_INSIGHTS_DAY_RUNS=15`` (300 exports) is the run whose figures docs/performance.md gives."""
    emulator.config.pending_polls, emulator.config.pending_seconds, emulator.config.tt_ttl = 0, 8, 2.0
    port = int(emulator.url.rsplit(":", 1)[1])
    before = triggerer_figures(celery, port)
    run_ids = [
        celery.trigger(TWENTY, f"2024-05-{n + 1:02d}", {"folder": str(tmp_path / f"run-{n}")})
        for n in range(DAY_RUNS)
    ]
    samples: list[dict[str, tuple[float, int]]] = []
    while any(celery.run_state(TWENTY, r) not in ("success", "failed") for r in run_ids):
        samples.append(triggerer_figures(celery, port))
        time.sleep(1)
    wait_until(lambda: emulator.live_sessions == 0, timeout=30, what="every session to log out")
    after = triggerer_figures(celery, port)
    renewals = sum(1 for r in emulator.requests if r.endpoint == "token" and not from_worker(r.user_agent))
    quarter = samples[len(samples) // 4]
    report(
        exports=sum(exports_started(emulator).values()),
        triggerer_renewals=renewals,
        rss_mb={n: [round(before[n][0]), round(quarter[n][0]), round(after[n][0])] for n in before},
        peak_connections={n: max(s[n][1] for s in samples) for n in before},
        connections_after={n: after[n][1] for n in after},
        logins=logins_by(emulator),
    )

    assert [celery.run_state(TWENTY, r) for r in run_ids] == ["success"] * DAY_RUNS
    assert sum(exports_started(emulator).values()) == 20 * DAY_RUNS
    assert renewals >= 2 * len(CeleryDeployment.TRIGGERERS)  # the day renewed TTs in the triggerers
    for name in CeleryDeployment.TRIGGERERS:
        assert after[name][0] - quarter[name][0] <= 25, f"{name} grew with the day"
        assert max(s[name][1] for s in samples) <= 20  # the pool's cap per session
        assert after[name][1] == 0  # connections close with the last trigger's session
    assert emulator.live_sessions == 0
