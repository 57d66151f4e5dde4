"""The request examples of the seed's Create Cluster Trigger page, copied verbatim."""

CRON = """{ "trigger_type": "cron", "schedule_config": { "cron_expression": "0 2 * * *", "timezone": "UTC" }, "execution_config": { "collection_ids": ["col_abc123"], "config": { "algorithm": "kmeans", "n_clusters": 5 } }, "description": "Daily clustering at 2am" }"""

INTERVAL = """{
"trigger_type": "interval",
"schedule_config": {
"interval_seconds": 21600,
"start_immediately": false
},
"execution_config": {
"collection_ids": ["col_products"],
"config": {
"algorithm": "hdbscan",
"min_cluster_size": 10
}
},
"description": "Cluster every 6 hours"
}"""

EVENT = """{
"trigger_type": "event",
"schedule_config": {
"event_type": "documents_added",
"event_threshold": 100,
"collection_id": "col_abc123",
"cooldown_seconds": 300
},
"execution_config": {
"collection_ids": ["col_abc123"],
"config": {
"algorithm": "kmeans",
"n_clusters": 3
}
},
"description": "Cluster after 100 new documents"
}"""

CONDITIONAL = """{
"trigger_type": "conditional",
"schedule_config": {
"condition_type": "drift",
"threshold": 0.3,
"metric": "cosine_drift",
"check_interval_seconds": 3600
},
"execution_config": {
"collection_ids": ["col_abc123"],
"config": {
"algorithm": "hdbscan",
"min_cluster_size": 5
}
},
"description": "Re-cluster when drift > 30%"
}"""

CLUSTER_ID = """{
"trigger_type": "interval",
"schedule_config": {
"interval_seconds": 3600,
"start_immediately": true
},
"cluster_id": "cluster_xyz789",
"description": "Hourly clustering using cluster_xyz789"
}"""

ALL = {"cron": CRON, "interval": INTERVAL, "event": EVENT, "conditional": CONDITIONAL, "cluster_id": CLUSTER_ID}
