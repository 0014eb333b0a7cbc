"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.protocol`."""

from airflow_provider_flexinsights.library.protocol import *  # noqa: F403
