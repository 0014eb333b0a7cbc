"""Export yesterday's queue report to object storage (S3, GCS, Azure... or file:// to try it).

`destination` takes any URI Airflow's `ObjectStoragePath` understands; the scheme picks the
filesystem and `conn_id` in the URI's user part (`s3://aws_default@bucket/...`) picks the Airflow
connection holding its credentials. The CSV streams to a temporary object that becomes the
destination only once complete. Set the Variable `flex_insights_export_uri` to e.g.
`s3://aws_default@my-bucket/flex` (needs `apache-airflow-providers-amazon`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

PREVIOUS_DAY = "{{ macros.ds_add(ds, -1) }}"
EXPORT_URI = "{{ var.value.get('flex_insights_export_uri', 'file:///tmp/flex_insights_objects') }}"

with DAG(
    dag_id="flex_insights_object_storage_export",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator(
        task_id="export_queue_report",
        report_id="3035643",
        date_from=PREVIOUS_DAY,
        date_to=PREVIOUS_DAY,
        destination=f"{EXPORT_URI}/queue_report/date={PREVIOUS_DAY}/queue_report.csv",
        deferrable=True,
        retries=2,
    )
