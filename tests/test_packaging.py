"""The installed distribution registers itself with Airflow as a provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import import_module, resources
from pathlib import Path

import pytest

from airflow_provider_flexinsights import __version__
from airflow_provider_flexinsights.get_provider_info import get_provider_info

from tests.conftest import AIRFLOW_VERSION


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
    assert packages["airflow-provider-flexinsights"]["version"] == __version__


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


def test_the_ui_api_serves_the_connection_form() -> None:
    """What the api-server's /ui/connections/hook_meta gives the React form: from the provider info
    on Airflow 3.2+, from the hook's classmethods on 3.1."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {hook.connection_type: hook for hook in HookMetaService.hook_meta_data()}["flex_insights"]
    fields = meta.standard_fields
    extras = meta.extra_fields

    assert meta.hook_name == "Flex Insights"
    assert fields.url_schema.hidden and fields.port.hidden
    assert (fields.login.title, fields.password.title, fields.host.title) == ("Email", "Password", "Base URL")
    assert fields.host.placeholder == "https://analytics.ytica.com"
    assert extras["workspace_id"]["schema"]["title"] == "Workspace ID"
    assert "32 lowercase letters and digits" in extras["workspace_id"]["description"]
    assert extras["allow_insecure_http"]["value"] is False
    assert "boolean" in extras["allow_insecure_http"]["schema"]["type"]


def test_airflow_32_reads_the_form_without_importing_the_hook() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    if not hasattr(manager, "iter_connection_type_hook_ui_metadata"):
        pytest.skip("Airflow < 3.2 imports the hook for its form (covered by the test above).")
    workspace = manager.connection_form_widgets["extra__flex_insights__workspace_id"].field

    assert workspace["schema"]["pattern"] == "^[a-z0-9]{32}$"


def test_the_hook_serves_the_same_form_to_older_airflow() -> None:
    from airflow_provider_flexinsights.hooks.flex_insights import FlexInsightsHook

    assert FlexInsightsHook.get_ui_field_behaviour() == {
        "hidden_fields": ["schema", "port"],
        "relabeling": {"login": "Email", "password": "Password", "host": "Base URL"},
        "placeholders": {"login": "analyst@example.com", "host": "https://analytics.ytica.com"},
    }


def test_every_module_imports_without_a_single_warning() -> None:
    """`python -W error -c "import ..."`: a DAG file importing the provider stays warning-free."""
    import pkgutil

    import airflow_provider_flexinsights as package

    every = pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    modules = [m.name for m in every if not m.name.endswith("__main__")]  # those run a program
    if AIRFLOW_VERSION < (3, 3):
        # Only OpenLineage imports it (and its 0.2.0 path); on Airflow 3.1 OpenLineage's own imports warn.
        modules.remove("airflow_provider_flexinsights.operators.lineage")
        modules.remove("airflow_provider_flexinsights.lineage")
    imports = "; ".join(f"import {name}" for name in ["airflow_provider_flexinsights", *modules])

    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", imports],
        check=False,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert {
        "airflow_provider_flexinsights.operators.flex_insights",
        "airflow_provider_flexinsights.cli",
    } <= set(modules)


def test_every_provider_info_extra_link_is_importable() -> None:
    for classpath in get_provider_info()["extra-links"]:
        module, _, name = classpath.rpartition(".")
        assert getattr(import_module(module), name)().name == "Flex Insights report"


ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = {"pytest", "mypy", "ruff", "playwright", "moto", "apache-airflow-providers-amazon"}


def test_the_demo_install_resolves_without_the_test_tools_but_with_what_the_demo_loads() -> None:
    """scripts/demo.sh installs `.[demo]` only: the test tools and their providers cost most of a
    first run's install time and the demo never uses them. Resolved by pip as a fresh venv would."""
    assert "scripts/bootstrap.sh demo" in (ROOT / "scripts" / "demo.sh").read_text()
    resolved = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--report",
            "-",
            "-c",
            str(ROOT / "constraints.txt"),
            f"{ROOT}[demo]",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    names = {item["metadata"]["name"].lower() for item in json.loads(resolved.stdout)["install"]}

    assert {"apache-airflow", "apache-airflow-providers-sqlite"} <= names
    assert not names & DEV_TOOLS
