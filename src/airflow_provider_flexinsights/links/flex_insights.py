"""The "Flex Insights report" button on a task: opens the exported report in the Analytics Portal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

from airflow_provider_flexinsights.protocol import report_page_url

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey
    from airflow.sdk import BaseOperator, Context


class FlexInsightsReportLink(BaseOperatorLink):
    """Link to the report in the Analytics Portal, for the workspace and report the task exported.

    The operator stores the URL in XCom as soon as its inputs are validated, before the export
    starts: the link is there while the task waits in the triggerer and after it fails.
    """

    name: ClassVar[str] = "Flex Insights report"
    key: ClassVar[str] = "flex_insights_report_url"

    @classmethod
    def persist(
        cls, context: Context, operator: BaseOperator, base_url: str, workspace_id: str, report_id: str
    ) -> None:
        """Keep the report's portal URL in XCom for :meth:`get_link` (unless XCom push is off)."""
        if operator.do_xcom_push:
            context["ti"].xcom_push(key=cls.key, value=report_page_url(base_url, workspace_id, report_id))

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """The URL the task stored, or "" (no button) when it stopped before validating its inputs."""
        from airflow.providers.common.compat.sdk import XCom  # moved in Airflow 3.2; only needed here

        url = XCom.get_value(key=self.key, ti_key=ti_key)
        return url if isinstance(url, str) else ""
