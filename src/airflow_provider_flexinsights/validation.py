"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.validation`."""

from airflow_provider_flexinsights.library.validation import *  # noqa: F403
