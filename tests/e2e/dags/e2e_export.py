"""One deferrable export whose report, dates and destination come from the run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

with DAG(
    dag_id="e2e_export", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False
):
    FlexInsightsExportOperator(
        task_id="export",
        report_id="{{ dag_run.conf.get('report_id', '3035643') }}",
        date_from="{{ dag_run.conf['date_from'] }}",
        date_to="{{ dag_run.conf['date_to'] }}",
        destination="{{ dag_run.conf['destination'] }}",
        deferrable=True,
    )
