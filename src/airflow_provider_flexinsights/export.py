"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.export`."""

from airflow_provider_flexinsights.library.export import *  # noqa: F403
