"""``python -m airflow_provider_flexinsights``: the ``flex-insights`` command line."""

from __future__ import annotations

import sys

from airflow_provider_flexinsights.cli import main

sys.exit(main())
