"""Export one queue's data for the previous 7 days, every Monday: a floating range and a value filter.

`filters` narrows the export on the server, before any byte is sent:

- `{"type": "floating", "from": -7, "to": -1}` keeps the 7 days before today, counted by Flex
  Insights in the workspace's time zone when the export runs. It replaces the default dates
  (the run's data interval), so `date_from`/`date_to` are not given. Because the server's clock
  picks the days, a backfill of old runs would export the same recent week each time: use
  `date_from`/`date_to` (see `flex_insights_backfill_export`) for those.
- `{"identifier": "label.conversations.queue", "in": ["Support"]}` keeps the rows of one queue. The
  identifier is the queue label's (Analytics Portal: Manage > Data > Attributes > the attribute >
  its label); the values are written exactly as reports show them, and are mapped to the
  workspace's element URIs once per worker process.

The file lands under the Airflow Variable `flex_insights_export_dir` (default `/tmp/flex_insights`).
Needs the `flex_insights_default` connection, with the workspace id in its extra.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_flexinsights.operators.flex_insights import FlexInsightsExportOperator

EXPORT_DIR = "{{ var.value.get('flex_insights_export_dir', '/tmp/flex_insights') }}"

with DAG(
    dag_id="flex_insights_filtered_export",
    schedule="0 6 * * 1",  # Mondays, 06:00 UTC: the previous Monday..Sunday
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={"queue": "Support"},
    tags=["flex-insights", "example"],
    doc_md=__doc__,
):
    FlexInsightsExportOperator(
        task_id="export_one_queue_last_week",
        report_id="3035643",  # from the report's Analytics Portal URL: .../obj/3035643
        filters=[
            {"type": "floating", "from": -7, "to": -1},
            {"identifier": "label.conversations.queue", "in": ["{{ params.queue }}"]},
        ],
        destination=f"{EXPORT_DIR}/queue_last_week/{{{{ params.queue }}}}/{{{{ ds }}}}.csv",
        deferrable=True,
        retries=2,
    )
