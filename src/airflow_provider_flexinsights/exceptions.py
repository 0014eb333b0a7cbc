"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.exceptions`."""

from airflow_provider_flexinsights.library.exceptions import *  # noqa: F403
