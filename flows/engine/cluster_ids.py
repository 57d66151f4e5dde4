"""Stable cluster ids across runs.

A team that re-clusters every night wants "cluster 7" on its dashboard to still mean the
same thing tomorrow. Each new cluster is matched to at most one cluster of the previous run
by an optimal assignment (Hungarian algorithm) on the cosine similarity of their centroids;
a pair at or above `min_similarity` keeps the old id, everything else gets a fresh id that
was never used before (ids of vanished clusters are not recycled).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

DEFAULT_MIN_SIMILARITY = 0.9


def stable_cluster_ids(
    centroids: np.ndarray,
    previous_ids: np.ndarray,
    previous_centroids: np.ndarray,
    next_id: int,
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> tuple[np.ndarray, int]:
    """Ids for the new clusters (one per centroid row) and the next never-used id."""
    ids = np.full(len(centroids), -1, dtype=np.int64)
    if len(centroids) and len(previous_centroids) and previous_centroids.shape[1] == centroids.shape[1]:
        similarity = _unit(centroids) @ _unit(previous_centroids).T
        rows, cols = linear_sum_assignment(similarity, maximize=True)
        kept = similarity[rows, cols] >= min_similarity
        ids[rows[kept]] = previous_ids[cols[kept]]
    fresh = np.flatnonzero(ids < 0)
    ids[fresh] = np.arange(next_id, next_id + len(fresh))
    return ids, next_id + len(fresh)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
