"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.transport`."""

from airflow_provider_flexinsights.library.transport import *  # noqa: F403
