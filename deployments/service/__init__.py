"""The trigger service: its commands and queries, the run hooks and failure policy, quotas, idempotency, the dashboard."""
