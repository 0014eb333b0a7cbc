"""Compatibility path of 0.2.0: the code now lives in `airflow_provider_flexinsights.library.export_spec`."""

from airflow_provider_flexinsights.library.export_spec import *  # noqa: F403
