"""One real Airflow deployment and one emulator for the whole end-to-end session.

The deployment's metadata database is PostgreSQL, as in production: its scheduler, dag-processor,
triggerer, api-server and LocalExecutor workers all write to it at once, and on SQLite a
seven-day backfill under load met "database is locked" (one file, one writer at a time)."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from airflow_provider_flexinsights.emulator import Emulator
from airflow_provider_flexinsights.emulator.postgres import PostgresServer

from tests.e2e.deployment import AirflowDeployment, PostgresDatabase, deployed


@pytest.fixture(scope="session")
def shared_emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture
def emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The session's emulator with an empty request log; config changes are undone after the test."""
    saved = copy.deepcopy(shared_emulator.config)
    shared_emulator.clear_requests()
    yield shared_emulator
    shared_emulator.state.config = saved


@pytest.fixture(scope="session")
def warehouse(postgres_server: PostgresServer) -> PostgresDatabase:
    """The example DAGs' SQL connection ``warehouse``: a database of the session's PostgreSQL."""
    return PostgresDatabase(postgres_server, "warehouse")


@pytest.fixture(scope="session")
def deployment(
    shared_emulator: Emulator,
    postgres_server: PostgresServer,
    warehouse: PostgresDatabase,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AirflowDeployment]:
    home = tmp_path_factory.mktemp("airflow-e2e")
    with deployed(
        AirflowDeployment,
        home,
        shared_emulator.url,
        env={"AIRFLOW_CONN_WAREHOUSE": postgres_server.url("warehouse", driver="postgres")},
        database=PostgresDatabase(postgres_server, "airflow_local"),
    ) as airflow:
        yield airflow
