"""Export several reports of one workspace for the previous day, one mapped task per report.

`.partial()` holds what the exports share, `.expand(report_id=[...])` makes one task instance per
report; each waits in the triggerer on its own and writes its own file.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

PREVIOUS_DAY = "{{ macros.ds_add(ds, -1) }}"
EXPORT_DIR = "{{ var.value.get('flex_insights_export_dir', '/tmp/flex_insights') }}"
REPORT_IDS = ["3035643", "3035645", "3035646"]  # from each report's URL: .../obj/<id>

with DAG(
    dag_id="flex_insights_mapped_export",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator.partial(
        task_id="export_report",
        date_from=PREVIOUS_DAY,
        date_to=PREVIOUS_DAY,
        destination=f"{EXPORT_DIR}/mapped/{{{{ task.report_id }}}}/{PREVIOUS_DAY}.csv",
        deferrable=True,
        retries=2,
    ).expand(report_id=REPORT_IDS)
