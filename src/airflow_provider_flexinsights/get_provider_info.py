"""What Airflow's providers manager reads, through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_flexinsights import __version__
from airflow_provider_flexinsights.library.protocol import DEFAULT_BASE_URL

_MODULE = "airflow_provider_flexinsights"

# The connection form, declared so that Airflow 3.2+ renders it without importing the hook
# (FlexInsightsHook.get_ui_field_behaviour serves the same data to older releases).
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {"login": "Email", "password": "Password", "host": "Base URL"},
    "placeholders": {
        "login": "analyst@example.com",
        "host": DEFAULT_BASE_URL,
    },
}
CONN_FIELDS: dict[str, Any] = {
    "workspace_id": {
        "label": "Workspace ID",
        "description": "Default workspace: the 32 lowercase letters and digits after /projects/ in the "
        "Analytics Portal URL. Operators may override it.",
        "schema": {"type": ["string", "null"], "pattern": "^[a-z0-9]{32}$"},
    },
    "allow_insecure_http": {
        "label": "Allow plain http:// to a non-loopback host",
        "description": "Only for a test server you trust: the password would travel unencrypted.",
        # "null" marks it optional: Airflow 3.3's form flags every extra without it as required
        "schema": {"type": ["boolean", "null"], "default": False},
    },
}


def get_provider_info() -> dict[str, Any]:
    """The provider's description for Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-flexinsights",
        "name": "Twilio Flex Insights",
        "description": "Export Twilio Flex Insights (GoodData) reports to CSV, deferrably and streaming.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "flex_insights",
                "hook-class-name": f"{_MODULE}.hooks.flex_insights.FlexInsightsHook",
                "hook-name": "Flex Insights",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
        "hooks": [
            {"integration-name": "Flex Insights", "python-modules": [f"{_MODULE}.hooks.flex_insights"]}
        ],
        "operators": [
            {"integration-name": "Flex Insights", "python-modules": [f"{_MODULE}.operators.flex_insights"]}
        ],
        "extra-links": [f"{_MODULE}.links.flex_insights.FlexInsightsReportLink"],
        "triggers": [
            {"integration-name": "Flex Insights", "python-modules": [f"{_MODULE}.triggers.flex_insights"]}
        ],
        "integrations": [
            {
                "integration-name": "Flex Insights",
                "external-doc-url": "https://www.twilio.com/docs/flex/developer/insights/api",
                "tags": ["service"],
            }
        ],
    }
