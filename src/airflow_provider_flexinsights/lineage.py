"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.operators.lineage`."""

from airflow_provider_flexinsights.operators.lineage import *  # noqa: F403
