"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.backoff`."""

from airflow_provider_flexinsights.library.backoff import *  # noqa: F403
