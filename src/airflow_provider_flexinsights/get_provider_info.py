"""What Airflow's providers manager reads, through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_flexinsights import __version__

_MODULE = "airflow_provider_flexinsights"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-flexinsights",
        "name": "Twilio Flex Insights",
        "description": "Export Twilio Flex Insights (GoodData) reports to CSV, deferrably and streaming.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "flex_insights",
                "hook-class-name": f"{_MODULE}.hooks.flex_insights.FlexInsightsHook",
            }
        ],
        "hooks": [
            {"integration-name": "Flex Insights", "python-modules": [f"{_MODULE}.hooks.flex_insights"]}
        ],
        "operators": [
            {"integration-name": "Flex Insights", "python-modules": [f"{_MODULE}.operators.flex_insights"]}
        ],
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
