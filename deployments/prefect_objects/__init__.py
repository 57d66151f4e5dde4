"""The translation into Prefect objects: deployments, automations, variables, events, blocks and locks of a trigger."""
