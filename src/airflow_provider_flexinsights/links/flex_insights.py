"""The "Flex Insights report" button on a task: opens the exported report in the Analytics Portal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink

from airflow_provider_flexinsights.library.protocol import report_page_url

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import TaskInstanceKey
    from airflow.sdk import BaseOperator, Context


class FlexInsightsReportLink(BaseOperatorLink):
    """Link to the report in the Analytics Portal, for the workspace and report the task exported.

    Airflow asks the link for its URL in the worker when a try ends (done, failed or deferred), on
    the operator object that ran the try, and stores the answer for the UI. The operator records
    the URL on itself and in XCom as soon as its inputs are validated (:meth:`persist`), so the
    button is there while the task waits in the triggerer and after it fails. A try that stopped
    before that has no button; the link does not look for an XCom that was never pushed, which
    Airflow's XCom client would log as an error under the task's real one.
    """

    name: ClassVar[str] = "Flex Insights report"
    key: ClassVar[str] = "flex_insights_report_url"

    @classmethod
    def persist(
        cls, context: Context, operator: BaseOperator, base_url: str, workspace_id: str, report_id: str
    ) -> None:
        """Record the report's portal URL on ``operator`` (for :meth:`get_link`) and in XCom
        (unless XCom push is off)."""
        url = report_page_url(base_url, workspace_id, report_id)
        setattr(operator, cls.key, url)
        if operator.do_xcom_push:
            context["ti"].xcom_push(key=cls.key, value=url)

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """The URL this try recorded, or "" (no button) when it stopped before validating its inputs."""
        url = getattr(operator, self.key, None)
        return url if isinstance(url, str) else ""
