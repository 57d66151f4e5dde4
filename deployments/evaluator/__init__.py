"""The evaluator: fires event and conditional triggers from what Prefect records (see `service`)."""
