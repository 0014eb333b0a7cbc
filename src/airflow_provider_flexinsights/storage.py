"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.storage`."""

from airflow_provider_flexinsights.library.storage import *  # noqa: F403
