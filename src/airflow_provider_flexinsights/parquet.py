"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.parquet`."""

from airflow_provider_flexinsights.library.parquet import *  # noqa: F403
