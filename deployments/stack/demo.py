"""Set-up steps of `make run` that need Prefect: demo data, and first runs of new triggers.

Demo data (the collections and cluster definition the example triggers name) is made only
when missing, so a second `make run` keeps what the first (or the user) added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition, definition_name
from prefect_cluster_triggers.blocks.collections import open_collection

_TOPICS = ["shoes", "laptops", "coffee", "garden", "books", "music"]


def ensure_collection(collection_id: str, centers: int, *, n: int = 2000, dim: int = 64, seed: int = 0) -> int:
    """Fill the collection with `centers` separated blobs (with text payloads) unless it has documents."""
    collection = open_collection(collection_id)
    if collection.count():
        return collection.count()
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(centers, dim))
    topic = rng.integers(0, centers, n)
    vectors = (means[topic] + rng.normal(size=(n, dim))).astype(np.float32)
    payloads = [{"title": f"{_TOPICS[t % len(_TOPICS)]} item {i}"} for i, t in enumerate(topic)]
    collection.add_documents(vectors, ids=[f"{collection_id}-{i}" for i in range(n)], payloads=payloads)
    return collection.count()


def ensure_cluster_definition(cluster_id: str, collection_id: str) -> None:
    name = definition_name(cluster_id)
    try:
        ClusterDefinition.load(name)
    except ValueError:
        ClusterDefinition(cluster_id=cluster_id, collection_ids=[collection_id],
                          config={"algorithm": "kmeans", "n_clusters": 5},
                          description="Demo definition used by the hourly example trigger").save(name)


async def start_new_immediate_triggers(prefect_yaml: Path) -> list[str]:
    """Run once the `start_immediately` interval triggers of `prefect_yaml` that never ran (prefect deploy cannot).

    Only the file's own triggers: one a user created meanwhile got its first run from `create`.
    """
    from prefect_cluster_triggers.deployments.service import commands, queries

    names = {d["name"] for d in yaml.safe_load(prefect_yaml.read_text())["deployments"]}
    triggers, _ = await queries.list_triggers(trigger_type="interval", status="active", limit=1000)
    started = []
    for trigger in triggers:
        if (trigger.trigger_id in names and trigger.schedule_config.start_immediately
                and trigger.last_execution_job_id is None):
            await commands.execute_trigger(trigger.trigger_id, trigger.namespace_id)
            started.append(trigger.trigger_id)
    return started


if __name__ == "__main__":
    import asyncio
    import sys

    if sys.argv[1:2] == ["first-runs"]:
        print("started:", ", ".join(asyncio.run(start_new_immediate_triggers(Path(sys.argv[2])))) or "none")
    else:
        print(ensure_collection("col_abc123", centers=5), ensure_collection("col_products", centers=4, seed=1))
        ensure_cluster_definition("cluster_xyz789", "col_abc123")
