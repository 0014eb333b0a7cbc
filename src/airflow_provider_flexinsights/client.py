"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.client`."""

from airflow_provider_flexinsights.library.client import *  # noqa: F403
