"""Test harness: a throwaway Airflow home (SQLite), the emulator on loopback, and DAG runs via dag.test().

Airflow reads its configuration when first imported, so the environment is set up here, before any
test module imports Airflow.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="flexinsights-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_AIRFLOW_HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)
(_AIRFLOW_HOME / "dags").mkdir()

from airflow_provider_flexinsights.emulator import (  # noqa: E402
    DEMO_PASSWORD,
    Emulator,
    EmulatorConfig,
    airflow_connection,
)
from airflow_provider_flexinsights.emulator.postgres import PostgresServer, start_postgres  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow-core").split(".")[:2])

requires_task_state_store = pytest.mark.skipif(
    AIRFLOW_VERSION < (3, 3),
    reason="Airflow < 3.3 has no task state store: there a retried task starts a new export (README).",
)
CONN_ENV = "AIRFLOW_CONN_FLEX_INSIGHTS_DEFAULT"
# What a connection test sends: log in, read the profile (profile/current answers 307 to the
# user's own profile, as the service does: docs/wire.md), log out.
CONNECTION_TEST_CALLS = [("login", 200), ("token", 200), ("profile", 307), ("profile", 200), ("logout", 204)]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database, once per test session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on loopback, once per test session (tests/postgres_server.py)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a test (or parametrize) to change the emulator's behaviour."""
    return EmulatorConfig(pending_polls=2)


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[Emulator]:
    with Emulator(emulator_config) as running:
        yield running


def connection_json(url: str, *, password: str = DEMO_PASSWORD, **extra: Any) -> str:
    return airflow_connection(url, password=password, **extra)


@pytest.fixture
def flex_connection(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """The default connection, pointing at this test's emulator."""
    monkeypatch.setenv(CONN_ENV, connection_json(emulator.url))
    return "flex_insights_default"


@dataclass
class DagRunResult:
    state: str
    task_state: str | None
    result: Any
    dag_id: str


_DAG_FILE = """\
import datetime
import pendulum
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

with DAG({dag_id!r}, schedule={schedule}, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    FlexInsightsExportOperator(task_id="export", **{kwargs})
"""


def dag_bag(folder: Path) -> Any:
    """Parse DAG files as the dag-processor does (DagBag moved in Airflow 3.2)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(folder))


def run_dag_file(path: Path, dag_id: str, logical_date: str) -> DagRunResult:
    """Run a DAG file's DAG with dag.test() (triggers run inline) and read back states and XCom."""
    import pendulum
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = dag_bag(path).get_dag(dag_id)
    dag_run = dag.test(logical_date=pendulum.parse(logical_date))
    task_instance = dag_run.get_task_instances()[0]
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=dag_run.run_id, key="return_value")
            .one_or_none()
        )
        result = row.value if row is not None else None
    return DagRunResult(str(dag_run.state), task_instance.state and str(task_instance.state), result, dag_id)


@pytest.fixture
def run_export(airflow_db: Path) -> Iterator[Callable[..., DagRunResult]]:
    """Run one FlexInsightsExportOperator(task_id="export", **kwargs) in a fresh DAG via dag.test()."""
    written: list[Path] = []

    def run(logical_date: str = "2024-03-02", schedule: str = "None", **kwargs: Any) -> DagRunResult:
        """``schedule`` is Python source: ``'None'``, ``'DeltaDataIntervalTimetable(...)'``..."""
        dag_id = f"test_export_{uuid.uuid4().hex[:10]}"
        path = airflow_db / "dags" / f"{dag_id}.py"
        path.write_text(
            textwrap.dedent(_DAG_FILE.format(dag_id=dag_id, schedule=schedule, kwargs=repr(kwargs)))
        )
        written.append(path)
        return run_dag_file(path, dag_id, logical_date)

    yield run
    for path in written:
        path.unlink(missing_ok=True)


def secrets_in(text: str, emulator: Emulator) -> list[str]:
    """Every password, SST or TT of this emulator that appears in ``text`` (must be none)."""
    candidates = {DEMO_PASSWORD, *emulator.issued_secrets}
    return sorted(secret for secret in candidates if secret in text)


def masks_the_sst_only(emulator: Emulator, work: Callable[[], object]) -> bool:
    """Whether ``work`` (one session) registered its SST with Airflow's masker and not its TT: the
    masker keeps every value for good, so only the long-lived SST goes there (docs/reliability.md)."""
    from airflow.sdk.log import redact

    before = emulator.issued_secrets
    work()
    (sst,) = emulator.issued_ssts - before
    (tt,) = emulator.issued_secrets - before - {sst}
    return str(redact(f"leaks {sst}")) == "leaks ***" and str(redact(f"leaks {tt}")) == f"leaks {tt}"


@contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """``folder`` made immutable (``chattr +i``): nothing can be created in it, not even by root,
    whom tests run as and ``chmod`` does not stop. Skips where chattr cannot (tmpfs, no capability)."""
    chattr = shutil.which("chattr")
    made = chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True, check=False)
    if not chattr or not made or made.returncode != 0:
        pytest.skip(f"chattr +i is not available on {folder}'s file system here")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


@dataclass(frozen=True)
class Unwritable:
    """A destination that cannot be written, and the one sentence that must say so."""

    destination: Path
    message: str


@pytest.fixture(params=["parent-is-a-file", "destination-is-a-folder", "immutable-folder", "sysfs"])
def unwritable_destination(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Unwritable]:
    """Each way a local destination cannot be written that stops root too (tests run as root)."""
    user, fix = getpass.getuser(), "give it write access there, or choose another destination."
    if request.param == "parent-is-a-file":
        taken = tmp_path / "taken"
        taken.write_text("a file where a folder should be")
        target = taken / "2024" / "out.csv"
        why = f"{taken} is a file, not a folder; move it away, or choose another destination."
        yield Unwritable(target, f"Cannot write {target}: {why}")
    elif request.param == "destination-is-a-folder":
        target = tmp_path / "out.csv"
        target.mkdir()
        why = f"it is a folder; give the destination a file name, such as {target}/export.csv."
        yield Unwritable(target, f"Cannot write {target}: {why}")
    elif request.param == "immutable-folder":
        locked = tmp_path / "locked"
        locked.mkdir()
        with immutable(locked):
            target = locked / "out.csv"
            why = f"user {user!r} may not write in {locked} (Operation not permitted); {fix}"
            yield Unwritable(target, f"Cannot write {target}: {why}")
    else:  # sysfs creates no file for anyone, root included: a real EACCES
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no sysfs mounted at /sys")
        target = Path("/sys/flex-insights-test.csv")
        why = f"user {user!r} may not write in /sys (Permission denied); {fix}"
        yield Unwritable(target, f"Cannot write {target}: {why}")


@pytest.fixture
def provider_logger() -> Iterator[None]:
    """The CLI (run in this process) points the provider's logger at its stderr; put it back for
    the tests after this one."""
    logger = logging.getLogger("airflow_provider_flexinsights")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port: int = unused.getsockname()[1]
    return port
