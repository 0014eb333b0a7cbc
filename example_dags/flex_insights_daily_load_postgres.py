"""Load yesterday's Flex Insights queue report into a PostgreSQL table, every day.

The run of day D loads day D-1 into `flex_insights.queue_stats` of the connection
`warehouse_postgres` (a `postgres` connection; `pip install "airflow-provider-flexinsights[postgres]"`).
`mode="replace_days"` deletes that day's rows and inserts the export in one transaction, so a rerun
or a clear-and-retry never duplicates a row. The table is created on the first run, with columns
named from the report (`offered_contacts`, ...) and typed from its definition (docs/warehouse.md).

Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.transfers.flex_insights_to_sql import FlexInsightsToSqlOperator

PREVIOUS_DAY = "{{ macros.ds_add(ds, -1) }}"

with DAG(
    dag_id="flex_insights_daily_load_postgres",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsToSqlOperator(
        task_id="load_queue_report",
        report_id="3035643",  # from the report's Analytics Portal URL: .../obj/3035643
        sql_conn_id="warehouse_postgres",
        schema="flex_insights",
        table="queue_stats",
        mode="replace_days",
        date_from=PREVIOUS_DAY,
        date_to=PREVIOUS_DAY,
        deferrable=True,
        retries=2,
    )
