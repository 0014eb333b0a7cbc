"""The throwaway PostgreSQL cluster the database tests rely on: reachable, isolated, gone after stop."""

from __future__ import annotations

from airflow_provider_flexinsights.emulator.postgres import PostgresServer, start_postgres


def test_the_session_server_answers_on_loopback_and_makes_databases(postgres_server: PostgresServer) -> None:
    postgres_server.create_database("probe_db")
    rows = postgres_server.query("SELECT current_database(), host(inet_server_addr())", database="probe_db")
    assert rows == [("probe_db", "127.0.0.1")]


def test_a_stopped_server_leaves_no_folder_and_no_listener() -> None:
    server = start_postgres()
    assert server.query("SELECT 1") == [("1",)]
    server.stop()
    assert not server.folder.exists()
    assert server.psql("-c", "SELECT 1", check=False).returncode != 0
