"""Clustering quality scores, computed from sufficient statistics where possible.

Formulas (k clusters, n_j members of cluster j, centroid c_j, overall mean c, noise excluded):

* silhouette_score: scikit-learn's mean silhouette on a uniform sample of at most
  `SILHOUETTE_SAMPLE` clustered documents (its cost is quadratic in the sample).
* davies_bouldin_index: mean over clusters i of max_{j != i} (s_i + s_j) / |c_i - c_j|,
  s_i = mean distance of cluster i's members to c_i. Lower is better.
* calinski_harabasz_score: [sum_j n_j |c_j - c|^2 / (k - 1)] / [sum_x |x - c_l(x)|^2 / (n - k)].
  Higher is better.

The last two equal scikit-learn's functions (tested) but come from per-cluster sums that
every batch of a run adds to (member counts, distance sums, squared distances), so they
cost O(k^2) at the end instead of another pass over the collection.
"""

from __future__ import annotations

import numpy as np

SILHOUETTE_SAMPLE = 4000


def scores_from(counts: np.ndarray, centroids: np.ndarray, distance_sums: np.ndarray, squared_distance_sum: float,
                silhouette: float | None) -> dict[str, float | None]:
    """The three scores of NOTES.md from a run's sufficient statistics; None where undefined (fewer than 2 clusters).

    `counts` and `distance_sums` are per cluster (members and the sum of their distances to
    the centroid), `squared_distance_sum` over every member: what the batches of a run add up.
    """
    k = len(centroids)
    counts = counts.astype(np.float64)
    n = int(counts.sum())
    if k < 2 or n <= k:
        return {"silhouette_score": None, "davies_bouldin_index": None, "calinski_harabasz_score": None}
    centres = centroids.astype(np.float64)
    spread = distance_sums / np.maximum(counts, 1)
    separation = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    np.fill_diagonal(separation, np.inf)
    with np.errstate(divide="ignore"):
        davies_bouldin = float(np.mean(np.max((spread[:, None] + spread[None, :]) / separation, axis=1)))
    overall = counts @ centres / n
    between = float(counts @ np.sum((centres - overall) ** 2, axis=1))
    calinski = float("inf") if squared_distance_sum == 0 else between * (n - k) / (squared_distance_sum * (k - 1))
    return {"silhouette_score": silhouette, "davies_bouldin_index": davies_bouldin, "calinski_harabasz_score": calinski}


def silhouette_of(vectors: np.ndarray, labels: np.ndarray, *, random_state: int, size: int) -> float | None:
    """scikit-learn's mean silhouette on a uniform sample of at most `size` clustered rows; None when undefined."""
    clustered = np.flatnonzero(labels >= 0)
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(clustered, size=min(size, len(clustered)), replace=False))
    sample_labels = labels[sample]
    if not 1 < len(np.unique(sample_labels)) < len(sample):
        return None
    from sklearn.metrics import silhouette_score  # here: storage imports this module, not only the runs

    return float(silhouette_score(np.asarray(vectors[sample]), sample_labels))
