"""The Airflow-free Flex Insights library: protocol, session, transports, operations, clients, the
export job and what it writes. Nothing here imports the Airflow glue beside it (hooks, operators,
transfers, triggers, links), so the CLI and the triggerer's waits run without loading Airflow."""
