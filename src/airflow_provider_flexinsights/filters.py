"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.filters`."""

from airflow_provider_flexinsights.library.filters import *  # noqa: F403
