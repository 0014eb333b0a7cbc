"""The installed distribution registers itself with Airflow as a provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import import_module, resources
from pathlib import Path

from airflow_provider_flexinsights.get_provider_info import get_provider_info


def test_airflow_providers_list_shows_the_provider(airflow_db: Path) -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    listed = subprocess.run(
        [airflow, "providers", "list", "--output", "json"],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )

    packages = {p["package_name"]: p for p in json.loads(listed.stdout)}
    assert "airflow-provider-flexinsights" in packages
    assert packages["airflow-provider-flexinsights"]["version"] == "0.1.0"


def test_provider_info_names_classes_that_exist() -> None:
    info = get_provider_info()
    (connection_type,) = info["connection-types"]
    module, _, name = connection_type["hook-class-name"].rpartition(".")
    hook = getattr(import_module(module), name)

    assert connection_type["connection-type"] == hook.conn_type == "flex_insights"
    assert hook.default_conn_name == "flex_insights_default"
    for kind in ("hooks", "operators", "triggers"):
        for entry in info[kind]:
            for module_name in entry["python-modules"]:
                import_module(module_name)


def test_package_ships_py_typed() -> None:
    assert resources.files("airflow_provider_flexinsights").joinpath("py.typed").is_file()


def test_airflow_reads_the_connection_form_from_the_provider_info() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["flex_insights"]
    widgets = manager.connection_form_widgets

    assert behaviour["hidden_fields"] == ["schema", "port"]
    assert behaviour["relabeling"] == {"login": "Email", "password": "Password", "host": "Base URL"}
    workspace = widgets["extra__flex_insights__workspace_id"].field
    assert workspace["schema"]["title"] == "Workspace ID"
    assert workspace["schema"]["pattern"] == "^[a-z0-9]{32}$"
    assert widgets["extra__flex_insights__allow_insecure_http"].field["value"] is False
    assert manager.hooks["flex_insights"] is not None


def test_the_hook_serves_the_same_form_to_older_airflow() -> None:
    from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook

    assert FlexInsightsHook.get_ui_field_behaviour() == {
        "hidden_fields": ["schema", "port"],
        "relabeling": {"login": "Email", "password": "Password", "host": "Base URL"},
        "placeholders": {"login": "analyst@example.com", "host": "https://analytics.ytica.com"},
    }
