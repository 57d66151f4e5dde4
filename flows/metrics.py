"""Clustering quality scores, computed from sufficient statistics where possible.

Formulas (k clusters, n_j members of cluster j, centroid c_j, overall mean c, noise excluded):

* silhouette_score: scikit-learn's mean silhouette on a uniform sample of at most
  `SILHOUETTE_SAMPLE` clustered documents (its cost is quadratic in the sample).
* davies_bouldin_index: mean over clusters i of max_{j != i} (s_i + s_j) / |c_i - c_j|,
  s_i = mean distance of cluster i's members to c_i. Lower is better.
* calinski_harabasz_score: [sum_j n_j |c_j - c|^2 / (k - 1)] / [sum_x |x - c_l(x)|^2 / (n - k)].
  Higher is better.

The last two equal scikit-learn's functions (tested) but reuse the member-to-centroid
distances the run computes anyway, so they cost O(k^2) instead of another pass that copies
the matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import silhouette_score

SILHOUETTE_SAMPLE = 4000
_CHUNK_ROWS = 16_384


def member_distances(vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row to its own cluster's centroid; NaN for noise."""
    distances = np.full(len(vectors), np.nan, dtype=np.float32)
    for start in range(0, len(vectors), _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        block_labels = labels[rows]
        members = block_labels >= 0
        if not members.any():
            continue
        block = np.asarray(vectors[rows], dtype=np.float32)[members]
        difference = block - centroids[block_labels[members]]
        block_distances = distances[rows]
        block_distances[members] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    return distances


def quality_scores(
    vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray, distances: np.ndarray, *, random_state: int = 42
) -> dict[str, float | None]:
    """The three scores of NOTES.md; None where undefined (fewer than 2 clusters)."""
    members = labels >= 0
    k = len(centroids)
    counts = np.bincount(labels[members], minlength=k).astype(np.float64)
    n = int(counts.sum())
    if k < 2 or n <= k:
        return {"silhouette_score": None, "davies_bouldin_index": None, "calinski_harabasz_score": None}
    member_distance = distances[members].astype(np.float64)
    centres = centroids.astype(np.float64)

    spread = np.bincount(labels[members], weights=member_distance, minlength=k) / np.maximum(counts, 1)
    separation = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    np.fill_diagonal(separation, np.inf)
    with np.errstate(divide="ignore"):
        davies_bouldin = float(np.mean(np.max((spread[:, None] + spread[None, :]) / separation, axis=1)))

    overall = counts @ centres / n
    between = float(counts @ np.sum((centres - overall) ** 2, axis=1))
    within = float(np.sum(member_distance**2))
    calinski = float("inf") if within == 0 else between * (n - k) / (within * (k - 1))

    rng = np.random.default_rng(random_state)
    clustered = np.flatnonzero(members)
    sample = np.sort(rng.choice(clustered, size=min(SILHOUETTE_SAMPLE, len(clustered)), replace=False))
    sample_labels = labels[sample]
    silhouette = (
        float(silhouette_score(np.asarray(vectors[sample]), sample_labels))
        if 1 < len(np.unique(sample_labels)) < len(sample)
        else None
    )
    return {"silhouette_score": silhouette, "davies_bouldin_index": davies_bouldin, "calinski_harabasz_score": calinski}
