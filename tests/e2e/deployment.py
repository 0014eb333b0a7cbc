"""A real Airflow 3 deployment on loopback, started and stopped by the tests.

The api-server, scheduler (LocalExecutor), dag-processor and triggerer run as separate processes,
each in its own process group, with an SQLite metadata database in a temporary Airflow home. Tests
read task instance states straight from that database and look at the process table to prove that
no worker holds a deferred task.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: each probe stays bound until all are chosen, so the
    OS cannot hand the same port out twice (the api-server once lost its port to serve-logs)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class AirflowDeployment:
    def __init__(self, home: Path, dags: list[Path], connection: str, extra_env: dict[str, str]) -> None:
        self.home = home
        self.port, worker_log_port, trigger_log_port = free_ports(3)
        self.logs = home / "component-logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        airflow_bin = Path(sys.executable).parent
        self.env = {
            **os.environ,
            "PATH": f"{airflow_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # five processes share one SQLite file: wait for its lock (30 s) instead of failing at 5 s
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=30",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            # a killed triggerer's triggers move to a live one after this many seconds
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "8",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
            "AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT": connection,
            **extra_env,
        }
        (home / "dags").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for dag in dags:
            (home / "dags" / dag.name).write_bytes(dag.read_bytes())

    # --- processes ----------------------------------------------------------------------------

    def cli(self, *args: str, done_if: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` command; SQLite's "database is locked" (a busy file, not an error of
        the command) is tried again, twice at most. A lock can strike after the command's own
        change was committed: ``done_if`` is the error a retry then meets, which means done."""
        failures: list[str] = []
        for attempt in (1, 2, 3):
            done = subprocess.run(
                ["airflow", *args], env=self.env, capture_output=True, text=True, check=False
            )
            if done.returncode == 0 or (attempt > 1 and done_if is not None and done_if in done.stderr):
                return done
            failures.append(f"attempt {attempt}:\n{done.stderr[-2000:]}")
            if "database is locked" not in done.stderr or attempt == 3:
                raise AssertionError(f"airflow {' '.join(args)} failed:\n" + "\n".join(failures))
            time.sleep(2)
        raise AssertionError("unreachable")

    def start(self, component: str) -> None:
        log = (self.logs / f"{component}.log").open("ab")
        self.processes[component] = subprocess.Popen(
            ["airflow", component], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, component: str, *, kill: bool = False) -> None:
        """Stop a component and every process it started (its process group), by process id."""
        process = self.processes.pop(component, None)
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def start_all(self, components: tuple[str, ...] = COMPONENTS) -> None:
        """Migrate the database and start ``components`` (all four unless told otherwise)."""
        self.cli("db", "migrate")
        for component in components:
            self.start(component)
        wait_until(self._api_is_up, timeout=120, what="the api-server to answer")

    def stop_all(self) -> None:
        for component in reversed(list(self.processes)):
            self.stop(component)
        for straggler in _processes_of(self.home):  # anything of ours that left its process group
            straggler.kill()

    def _api_is_up(self) -> bool:
        """Our api-server answers its version (not merely: something listens on its port)."""
        import requests

        server = self.processes.get("api-server")
        if server is not None and server.poll() is not None:
            log = (self.logs / "api-server.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"the api-server exited with {server.returncode}:\n{log}")
        try:
            answer = requests.get(f"http://127.0.0.1:{self.port}/api/v2/version", timeout=5)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and "version" in answer.json()

    # --- state --------------------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        database = sqlite3.connect(f"file:{self.home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
        database.row_factory = sqlite3.Row
        try:
            return database.execute(sql, params).fetchall()
        finally:
            database.close()

    def wait_for_dag(self, dag_id: str) -> None:
        wait_until(
            lambda: self.query("SELECT 1 FROM dag WHERE dag_id = ? AND is_stale = 0", dag_id),
            timeout=120,
            what=f"DAG {dag_id} to be parsed",
        )

    def trigger(self, dag_id: str, logical_date: str, conf: dict[str, Any] | None = None) -> str:
        """Start a run and return its run id."""
        self.wait_for_dag(dag_id)
        self.cli("dags", "unpause", dag_id)
        run_id = f"e2e__{logical_date}__{time.monotonic_ns()}"
        args = [
            "dags",
            "trigger",
            dag_id,
            "--run-id",
            run_id,
            "--logical-date",
            f"{logical_date}T00:00:00+00:00",
        ]
        self.cli(*args, "--conf", json.dumps(conf or {}))
        return run_id

    def unpause_and_settle(self, dag_id: str, *, timeout: float = 180) -> None:
        """Unpause a DAG and wait until the runs its schedule creates at once have finished."""
        self.wait_for_dag(dag_id)
        self.cli("dags", "unpause", dag_id)
        time.sleep(3)  # let the scheduler create the latest scheduled run, if any
        wait_until(
            lambda: (
                not self.query(
                    "SELECT 1 FROM dag_run WHERE dag_id = ? AND state NOT IN ('success', 'failed')", dag_id
                )
            ),
            timeout=timeout,
            what=f"the scheduled runs of {dag_id} to finish",
        )

    def runs(self, dag_id: str) -> list[sqlite3.Row]:
        return self.query(
            "SELECT run_id, run_type, state, logical_date FROM dag_run WHERE dag_id = ?", dag_id
        )

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """Mark a task instance as a user would in the UI, through the REST API."""
        import requests

        url = f"http://127.0.0.1:{self.port}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        token = requests.get(f"http://127.0.0.1:{self.port}/auth/token", timeout=30).json()["access_token"]
        answer = requests.patch(
            url, json={"new_state": state}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        answer.raise_for_status()

    def task_instances(self, dag_id: str, run_id: str) -> list[sqlite3.Row]:
        return self.query(
            "SELECT id, task_id, map_index, state, try_number FROM task_instance"
            " WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
            dag_id,
            run_id,
        )

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
        return rows[0]["state"] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 180) -> str:
        done = ("success", "failed")
        state = wait_until(
            lambda: (s := self.run_state(dag_id, run_id)) in done and s,
            timeout=timeout,
            what=f"run {run_id} of {dag_id} to finish",
        )
        return str(state)

    def processes_for(self, ti_id: str) -> list[psutil.Process]:
        """Live processes working on this task instance (executor workers put its id in their title)."""
        wanted = {str(uuid.UUID(ti_id)), uuid.UUID(ti_id).hex}
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(w in part for part in process.info["cmdline"] or () for w in wanted):
                found.append(process)
        return found


def _processes_of(home: Path) -> list[psutil.Process]:
    """Processes whose environment points at this Airflow home (ours, whatever their group)."""
    mine = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get("AIRFLOW_HOME") == str(home):
                mine.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return mine
