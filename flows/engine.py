"""The clustering engine: documents in, labelled clusters with stable ids and scores out.

Pure numpy / scikit-learn. The flow calls these steps as separate tasks, so each shows up
with its own timing in the Prefect UI, but nothing here knows about Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from prefect_cluster_triggers.deployments.clustering_config import _AlgorithmConfig
from prefect_cluster_triggers.flows.cluster_ids import stable_cluster_ids
from prefect_cluster_triggers.flows.clusterers import Clustering, check_feasible, make_clusterer
from prefect_cluster_triggers.flows.conditions import mean_similarity
from prefect_cluster_triggers.flows.errors import DataError
from prefect_cluster_triggers.flows.geometry import cluster_means, nearest_centroid
from prefect_cluster_triggers.flows.keywords import cluster_keywords
from prefect_cluster_triggers.flows.metrics import member_distances, quality_scores
from prefect_cluster_triggers.flows.preprocess import normalize_rows, reduce_dimensions, sample_rows

_CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class Documents:
    """A collection's documents: ids, one float32 matrix, and text for keywords (may be empty)."""

    ids: Sequence[str]
    vectors: np.ndarray
    texts: Sequence[str] = ()


@dataclass(frozen=True)
class PreviousClusters:
    """What the last successful run left for matching ids: its cluster ids and centroids."""

    ids: np.ndarray
    centroids: np.ndarray
    next_id: int


@dataclass(frozen=True)
class Outcome:
    """One run's result, ready to persist."""

    cluster_of: np.ndarray  # stable cluster id per document, -1 = noise
    distance: np.ndarray  # distance to its cluster's centroid, NaN for noise
    cluster_ids: np.ndarray  # one per cluster
    centroids: np.ndarray  # one row per cluster, in the normalised full-dimensional space
    num_members: np.ndarray
    keywords: list[list[str]]
    metrics: dict[str, float | None]
    next_cluster_id: int
    mean_similarity: float  # baseline of cosine_drift: mean cosine similarity to the nearest centroid


def prepare(documents: Documents, config: _AlgorithmConfig) -> tuple[np.ndarray, np.ndarray]:
    """Check the data, then return (full-dimensional vectors, vectors to fit on).

    The first is normalised in place when asked: `documents.vectors` must be the run's own
    (copy-on-write) matrix.

    Raises:
        DataError: empty collection, NaN or inf values.
        ClusteringRefused: the algorithm cannot work on this many documents.
    """
    vectors = documents.vectors
    fit_rows = config.sample_size if config.sample_size is not None else len(vectors)
    check_feasible(config, min(fit_rows, len(vectors)))
    _check_finite(vectors, documents.ids)
    if config.normalize:
        normalize_rows(vectors)
    return vectors, reduce_dimensions(vectors, config.reduce)


def fit(full: np.ndarray, fit_space: np.ndarray, config: _AlgorithmConfig) -> Clustering:
    """Cluster; with `sample_size`, fit on a sample and give every other document its nearest cluster.

    Centroids are returned in the full-dimensional space, where runs can be compared (a
    PCA basis changes from run to run).
    """
    rows = sample_rows(len(fit_space), config.sample_size)
    fitted = make_clusterer(config).fit(fit_space if rows is None else np.ascontiguousarray(fit_space[rows]))
    labels = fitted.labels
    if rows is not None:
        labels = np.full(len(fit_space), -1, dtype=np.int32)
        if fitted.n_clusters:
            labels, _ = nearest_centroid(fit_space, fitted.centroids)
        labels[rows] = fitted.labels  # sampled documents keep their own label, noise included
    return Clustering(labels, cluster_means(full, labels, fitted.n_clusters))


def score(
    full: np.ndarray, clustering: Clustering, texts: Sequence[str], previous: PreviousClusters | None
) -> Outcome:
    """Distances, quality scores, keywords and stable ids for a fitted clustering."""
    distance = member_distances(full, clustering.labels, clustering.centroids)
    metrics = quality_scores(full, clustering.labels, clustering.centroids, distance)
    ids, next_id = stable_cluster_ids(
        clustering.centroids,
        previous.ids if previous else np.empty(0, dtype=np.int64),
        previous.centroids if previous else np.empty((0, full.shape[1]), dtype=np.float32),
        previous.next_id if previous else 0,
    )
    cluster_of = np.where(clustering.labels >= 0, ids[np.maximum(clustering.labels, 0)], -1)
    return Outcome(
        cluster_of=cluster_of,
        distance=distance,
        cluster_ids=ids,
        centroids=clustering.centroids,
        num_members=np.bincount(clustering.labels[clustering.labels >= 0], minlength=clustering.n_clusters),
        keywords=cluster_keywords(texts, clustering.labels, clustering.n_clusters),
        metrics=metrics,
        next_cluster_id=next_id,
        mean_similarity=mean_similarity(full, clustering.centroids) if clustering.n_clusters else 0.0,
    )


def _check_finite(vectors: np.ndarray, ids: Sequence[str]) -> None:
    for start in range(0, len(vectors), _CHUNK_ROWS):
        block = vectors[start : start + _CHUNK_ROWS]
        if not np.isfinite(block).all():
            row = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise DataError(f"document {ids[row]!r} (row {row}) has a NaN or infinite value")
