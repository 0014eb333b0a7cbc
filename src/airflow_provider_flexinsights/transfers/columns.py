"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.columns`."""

from airflow_provider_flexinsights.library.columns import *  # noqa: F403
