"""One check of a conditional trigger: its metric measured on the collection as it is now.

The baseline is the trigger's last successful clustering (its stored centroids and the
figures recorded with them); the metrics and their formulas are in `flows.conditions`.
A check reads the collections read-only (local ones through a memory map) and never
touches the results, so a failing check changes nothing but its own record.
"""

from __future__ import annotations

import numpy as np

from prefect_cluster_triggers.blocks.cluster_definition import load_cluster_definition
from prefect_cluster_triggers.blocks.collections import load_collection
from prefect_cluster_triggers.blocks.result_store import default_result_store
from prefect_cluster_triggers.flows.conditions import Baseline, centroid_shift, cosine_drift, document_growth, silhouette_drop
from prefect_cluster_triggers.flows.errors import DataError, NotFound


def measure(trigger_id: str, metric: str, collection_ids: list[str] | None, cluster_id: str | None) -> float | None:
    """The metric now; None when the trigger has not clustered yet (so its first check fires).

    Args:
        collection_ids: the trigger's own collections, or None to take its cluster definition's.

    Raises:
        ClusterTriggersError: a collection or definition that cannot be read.
    """
    try:
        latest = default_result_store().latest(trigger_id)
    except NotFound:
        return None
    if collection_ids is None:
        collection_ids = load_cluster_definition(cluster_id).execution_config().collection_ids
    vectors = _vectors(collection_ids)
    record = latest.record
    baseline = Baseline(
        centroids=latest.centroids,
        mean_similarity=float(record["mean_similarity"]),
        num_documents=int(record["num_documents"]),
        silhouette=record["metrics"].get("silhouette_score"),
    )
    if vectors.shape[1:] != latest.centroids.shape[1:] and metric != "document_growth":
        raise DataError(
            f"collections {', '.join(collection_ids)} have dimension {vectors.shape[1]}, "
            f"the last clustering {latest.centroids.shape[1]}"
        )
    if metric == "cosine_drift":
        return cosine_drift(vectors, baseline)
    if metric == "centroid_shift":
        return centroid_shift(vectors, baseline)
    if metric == "document_growth":
        return document_growth(len(vectors), baseline)
    return silhouette_drop(vectors, baseline)


def _vectors(collection_ids: list[str]) -> np.ndarray:
    parts = [load_collection(c).read_vectors() for c in collection_ids]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
