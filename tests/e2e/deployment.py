"""Real Airflow 3 deployments on loopback, started and stopped by the tests.

``AirflowDeployment``: the api-server, scheduler (LocalExecutor), dag-processor and triggerer run as
separate processes, each in its own process group, in a temporary Airflow home, on the metadata
database it is given (PostgreSQL for the operations proofs, SQLite by default).
``CeleryDeployment``: the distributed shape production runs, on one machine: a PostgreSQL metadata
database, Redis as the Celery broker, two Celery workers and two triggerers
(each with a host name of its own), scheduler, dag-processor and api-server. Tests read states
straight from the metadata database and look at the process table to prove that no worker holds a
deferred task.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil

from airflow_provider_flexinsights.emulator import airflow_connection
from airflow_provider_flexinsights.emulator.postgres import PostgresServer

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DAG_FILES = [  # the example DAGs and the tests' own, in every deployment
    *sorted((REPO_ROOT / "example_dags").glob("*.py")),
    *sorted((REPO_ROOT / "tests" / "e2e" / "dags").glob("*.py")),
]
T = TypeVar("T")
Row = Mapping[str, Any]


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


class MetadataDatabase(Protocol):
    """Where a deployment keeps its state, and read-only queries for the tests' assertions."""

    url: str  # [database] sql_alchemy_conn

    def query(self, sql: str, *params: Any) -> list[Row]:
        """Rows of ``sql`` by column name; ``?`` marks each parameter."""
        ...


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        self.path = path
        # five processes share one SQLite file: wait for its lock (30 s) instead of failing at 5 s
        self.url = f"sqlite:///{path}?timeout=30"

    def query(self, sql: str, *params: Any) -> list[Row]:
        database = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        database.row_factory = sqlite3.Row
        try:
            return database.execute(sql, params).fetchall()
        finally:
            database.close()


class PostgresDatabase:
    """A database of a throwaway PostgreSQL server (``emulator.postgres``), read with psycopg2."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        server.create_database(name)
        self.dsn = server.url(name)
        self.url = server.url(name, driver="postgresql+psycopg2")

    def query(self, sql: str, *params: Any) -> list[Row]:
        import psycopg2
        import psycopg2.extras

        with psycopg2.connect(self.dsn) as connection:
            # JSON columns as their text, as SQLite gives them: the tests' json.loads fits both
            psycopg2.extras.register_default_json(connection, loads=lambda text: text)
            psycopg2.extras.register_default_jsonb(connection, loads=lambda text: text)
            with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(sql.replace("%", "%%").replace("?", "%s"), params)
                rows: list[Row] = cursor.fetchall()
        connection.close()
        return rows


class AirflowDeployment:
    """LocalExecutor on SQLite unless a subclass says otherwise (see ``CeleryDeployment``)."""

    SERVICES: tuple[str, ...] = ()  # components the others use: stopped after them

    def __init__(
        self,
        home: Path,
        dags: list[Path],
        connection: str,
        extra_env: dict[str, str],
        database: MetadataDatabase | None = None,
    ) -> None:
        self.home = home
        self.database = database or SqliteDatabase(home / "airflow.db")
        self.port, worker_log_port, trigger_log_port = free_ports(3)
        self.logs = home / "component-logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # each component: its command line and what its environment adds to the shared one
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {
            component: (["airflow", component], {}) for component in COMPONENTS
        }
        airflow_bin = Path(sys.executable).parent
        self.env = {
            **os.environ,
            "PATH": f"{airflow_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database.url,
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
        command, own_env = self.commands[component]
        log = (self.logs / f"{component}.log").open("ab")
        self.processes[component] = subprocess.Popen(
            command,
            env={**self.env, **own_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, component: str, *, kill: bool = False) -> None:
        """Stop a component and every process it started, by process id: its process group, and
        with ``kill`` (SIGKILL, as a lost machine) also descendants that made a group of their own
        (Airflow's supervisor puts each task process in its own group)."""
        process = self.processes.pop(component, None)
        if process is None:
            return
        descendants = _descendants(process.pid) if kill else []
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            for descendant in descendants:
                with contextlib.suppress(psutil.NoSuchProcess):
                    descendant.kill()
            process.wait(timeout=30)
            psutil.wait_procs(descendants, timeout=10)  # gone, not merely signalled
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def start_all(self, components: tuple[str, ...] | None = None) -> None:
        """Migrate the database and start ``components`` (all of them unless told otherwise)."""
        self.cli("db", "migrate")
        for component in components or tuple(self.commands):
            self.start(component)
        wait_until(self._api_is_up, timeout=120, what="the api-server to answer")

    def stop_all(self) -> None:
        """Stop the components all at once (one after another took 15-30 s), then the services
        they use, then anything of ours that left its process group. Each gets 5 s to exit, then
        SIGKILL: nothing is tested after this (a triggerer waited 10 s for its triggers)."""
        airflow = [c for c in self.processes if c not in self.SERVICES]
        for wave in (airflow, [c for c in self.processes if c in self.SERVICES]):
            stopping = [self.processes.pop(component) for component in wave]
            for process in stopping:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            for process in stopping:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        for straggler in _processes_of(self.home):
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

    def query(self, sql: str, *params: Any) -> list[Row]:
        return self.database.query(sql, *params)

    def wait_for_dag(self, dag_id: str) -> None:
        wait_until(
            lambda: self.query("SELECT 1 FROM dag WHERE dag_id = ? AND NOT is_stale", dag_id),
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

    def runs(self, dag_id: str) -> list[Row]:
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

    def task_instances(self, dag_id: str, run_id: str) -> list[Row]:
        return self.query(
            "SELECT id, task_id, map_index, state, try_number, hostname FROM task_instance"
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


class CeleryDeployment(AirflowDeployment):
    """CeleryExecutor on PostgreSQL with Redis as its broker: two workers, two triggerers.

    The timeouts that decide how fast a lost process is noticed are set low, so the failover tests
    wait seconds, not the minutes of Airflow's defaults.
    """

    SERVICES = ("redis",)
    WORKERS = ("worker-1", "worker-2")
    TRIGGERERS = ("triggerer-1", "triggerer-2")

    def __init__(
        self,
        home: Path,
        dags: list[Path],
        connection: str,
        extra_env: dict[str, str],
        postgres: PostgresServer,
        *,
        worker_concurrency: int = 4,
    ) -> None:
        database = PostgresDatabase(postgres, "airflow")
        redis_port, *log_ports = free_ports(1 + len(self.WORKERS) + len(self.TRIGGERERS))
        celery_env = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3: name the psycopg2 driver
            "AIRFLOW__CELERY__RESULT_BACKEND": postgres.url("airflow", driver="db+postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
            "AIRFLOW__API__WORKERS": "2",
            # each process names its own host (tests/e2e/hostname.py): workers and triggerers apart
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.hostname.from_environment",
            # tests.e2e.hostname, after what the session had (a checkout's src/ before an install)
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO_ROOT)])),
            # a lost worker's task is failed, and retried, after 20 s without a heartbeat (not 5 min)
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            # a task waits this long for the api-server to answer (5 s by default): a cold one, its
            # first twenty task starts at once on two busy cores, once took 36 s and failed five
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            # a triggerer takes at most 2 new triggers per loop (about 1 s): both get a share
            "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "2",
        }
        super().__init__(home, dags, connection, {**celery_env, **extra_env}, database)
        self.starts: Counter[str] = Counter()
        redis = ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", str(home)]
        self.commands = {
            "redis": ([*redis, "--save", "", "--appendonly", "no"], {}),  # a broker that forgets
            **{name: self.commands[name] for name in ("scheduler", "dag-processor", "api-server")},
        }
        for name, port in zip(self.TRIGGERERS, log_ports, strict=False):
            own = {"E2E_HOSTNAME": name, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port)}
            self.commands[name] = (["airflow", "triggerer"], own)
        for name, port in zip(self.WORKERS, log_ports[len(self.TRIGGERERS) :], strict=True):
            pid_file = str(home / f"{name}.pid")
            worker = ["airflow", "celery", "worker", "--celery-hostname", name, "--pid", pid_file]
            own = {"E2E_HOSTNAME": name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)}
            self.commands[name] = (worker, own)

    def start(self, component: str) -> None:
        super().start(component)
        self.starts[component] += 1

    def start_all(self, components: tuple[str, ...] | None = None) -> None:
        super().start_all(components)
        for worker in self.WORKERS:
            self._wait_for_worker(worker)
        wait_until(
            lambda: {r["hostname"] for r in self.live_triggerers()} >= set(self.TRIGGERERS),
            timeout=120,
            what="both triggerers to heartbeat",
        )

    def restart(self, component: str) -> None:
        """Start again a worker or triggerer a test killed, and wait until it is up."""
        if component in self.processes:
            return
        newest_job = self.query("SELECT coalesce(max(id), 0) AS id FROM job")[0]["id"]
        self.start(component)
        if component in self.WORKERS:
            self._wait_for_worker(component)
            return
        wait_until(
            lambda: any(r["hostname"] == component and r["id"] > newest_job for r in self.live_triggerers()),
            timeout=120,
            what=f"{component} to heartbeat again",
        )

    def _wait_for_worker(self, worker: str) -> None:
        """Until Celery says this worker is ready, once per start (its log is appended to)."""
        log = self.logs / f"{worker}.log"
        wait_until(
            lambda: log.read_text(errors="replace").count(f"{worker} ready.") >= self.starts[worker],
            timeout=120,
            what=f"Celery {worker} to be ready",
        )

    def worker_connected_from(self, client_port: int, server_port: int) -> tuple[str, psutil.Process] | None:
        """The worker, and its process, that holds the TCP connection from loopback port
        ``client_port`` to ``server_port`` now (the one a server saw a request come from), if any.

        The socket tells the process doing the work apart from any other that worked on the same
        task instance before (the process table alone cannot: a task's processes on the worker
        that ran it before it deferred linger for seconds)."""
        for worker in self.WORKERS:
            main = self.processes.get(worker)
            for process in [] if main is None else [psutil.Process(main.pid), *_descendants(main.pid)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    if any(
                        c.laddr and c.raddr and c.laddr.port == client_port and c.raddr.port == server_port
                        for c in process.net_connections(kind="tcp")
                    ):
                        return worker, process
        return None

    def live_triggerers(self) -> list[Row]:
        return self.query(
            "SELECT id, hostname FROM job WHERE job_type = 'TriggererJob' AND state = 'running'"
            " AND end_date IS NULL AND latest_heartbeat > now() - interval '10 seconds'"
        )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


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


D = TypeVar("D", bound=AirflowDeployment)


@contextlib.contextmanager
def deployed(
    kind: Callable[..., D],
    home: Path,
    emulator_url: str,
    *args: Any,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> Iterator[D]:
    """The example and e2e DAGs deployed against the emulator (exports under ``home/exports``),
    started, and stopped however the fixture ends: the one body of both deployments' fixtures."""
    extra_env = {"AIRFLOW_VAR_FLEX_INSIGHTS_EXPORT_DIR": str(home / "exports"), **(env or {})}
    airflow = kind(home, DAG_FILES, airflow_connection(emulator_url), extra_env, *args, **options)
    try:
        airflow.start_all()
        yield airflow
    finally:
        airflow.stop_all()
