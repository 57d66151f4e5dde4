"""One check of a conditional trigger: its metric measured on the collection as it is now.

The baseline is the trigger's last successful clustering (its stored centroids and the
figures recorded with them); the metrics and their formulas are in `flows.conditions`.
A check streams the collections batch by batch (memory is one batch, whatever their size)
and never touches the results, so a failing check changes nothing but its own record.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from prefect_cluster_triggers.blocks.cluster_definition import load_cluster_definition
from prefect_cluster_triggers.blocks.collections import DocumentSource, load_collection
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
    record = latest.record
    baseline = Baseline(
        centroids=latest.centroids,
        mean_similarity=float(record["mean_similarity"]),
        num_documents=int(record["num_documents"]),
        silhouette=record["metrics"].get("silhouette_score"),
    )
    sources = [load_collection(c) for c in collection_ids]
    if metric == "document_growth":
        return document_growth(sum(_count(source) for source in sources), baseline)
    blocks = _vectors(sources, latest.centroids.shape[1], collection_ids)
    if metric == "cosine_drift":
        return cosine_drift(blocks, baseline)
    if metric == "centroid_shift":
        return centroid_shift(blocks, baseline)
    return silhouette_drop(blocks, baseline, count=sum(_count(source) for source in sources))


def _count(source: DocumentSource) -> int:
    known = source.count()
    return known if known is not None else sum(len(batch.vectors) for batch in source.batches(ids=False))


def _vectors(sources: list[DocumentSource], dim: int, collection_ids: list[str]) -> Iterator[np.ndarray]:
    """The collections' vectors, batch by batch; a dimension other than the clustering's is an error."""
    for source in sources:
        for batch in source.batches(ids=False):
            if batch.vectors.shape[1] != dim:
                raise DataError(f"collections {', '.join(collection_ids)} have dimension {batch.vectors.shape[1]}, "
                                f"the last clustering {dim}")
            yield batch.vectors
