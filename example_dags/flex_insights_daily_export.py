"""Export yesterday's Flex Insights queue report to a dated CSV file, every day.

The run of day D exports day D-1, the previous complete day: `{{ macros.ds_add(ds, -1) }}`.
Waiting for the export happens in the triggerer (`deferrable=True`), so no worker slot is held
while Flex Insights computes it. The files land under the Airflow Variable
`flex_insights_export_dir` (default `/tmp/flex_insights`), one per day.

Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

PREVIOUS_DAY = "{{ macros.ds_add(ds, -1) }}"
EXPORT_DIR = "{{ var.value.get('flex_insights_export_dir', '/tmp/flex_insights') }}"

with DAG(
    dag_id="flex_insights_daily_export",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator(
        task_id="export_queue_report",
        report_id="3035643",  # from the report's Analytics Portal URL: .../obj/3035643
        date_from=PREVIOUS_DAY,
        date_to=PREVIOUS_DAY,
        destination=f"{EXPORT_DIR}/queue_report/{PREVIOUS_DAY}.csv",
        deferrable=True,
        retries=2,
    )
