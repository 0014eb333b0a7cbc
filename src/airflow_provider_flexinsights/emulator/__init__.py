"""A local emulator of the Flex Insights export API, for demos and tests. Not used by the provider."""

from __future__ import annotations

from airflow_provider_flexinsights.emulator.data import render_report
from airflow_provider_flexinsights.emulator.model import (
    AGENT_REPORT,
    ALIAS_REPORT,
    BULK_REPORT,
    CHANNEL_LABEL,
    CHANNEL_REPORT,
    DEMO_EMAIL,
    DEMO_PASSWORD,
    DEMO_WORKSPACE,
    DIRECTION_LABEL,
    EMPTY_REPORT,
    EU_DATE_REPORT,
    QUEUE_LABEL,
    QUEUE_REPORT,
    REORDERED_REPORT,
    EmulatorConfig,
    Fault,
    Label,
    Report,
    RequestRecord,
    Workspace,
    airflow_connection,
)
from airflow_provider_flexinsights.emulator.server import Emulator

__all__ = [
    "AGENT_REPORT",
    "ALIAS_REPORT",
    "BULK_REPORT",
    "CHANNEL_LABEL",
    "CHANNEL_REPORT",
    "DEMO_EMAIL",
    "DEMO_PASSWORD",
    "DEMO_WORKSPACE",
    "DIRECTION_LABEL",
    "EMPTY_REPORT",
    "EU_DATE_REPORT",
    "QUEUE_LABEL",
    "QUEUE_REPORT",
    "REORDERED_REPORT",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "Label",
    "Report",
    "RequestRecord",
    "Workspace",
    "airflow_connection",
    "render_report",
]
