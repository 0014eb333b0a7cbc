"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.operations`."""

from airflow_provider_flexinsights.library.operations import *  # noqa: F403
