"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.session`."""

from airflow_provider_flexinsights.library.session import *  # noqa: F403
