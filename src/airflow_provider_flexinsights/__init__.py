"""Apache Airflow provider for Twilio Flex Insights report exports.

Start with :class:`~airflow_provider_flexinsights.operators.flex_insights.FlexInsightsExportOperator`.
Nothing heavy is imported here: Airflow reads this package when it discovers providers.
"""

from __future__ import annotations

__version__ = "0.2.0"
