"""Vectorised geometry shared by the clusterers, the scores and the condition checks."""

from __future__ import annotations

import numpy as np
from scipy import sparse

_CHUNK_ROWS = 16_384


def cluster_means(vectors: np.ndarray, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean vector of each cluster 0..n_clusters-1 (noise, -1, ignored), as float32.

    Sparse indicator products instead of a loop over clusters: linear in the documents
    whatever the number of clusters. Chunked, so the float64 accumulation never upcasts the
    whole float32 matrix at once (scipy would: +2x the matrix in memory).
    """
    sums = np.zeros((n_clusters, vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(vectors), _CHUNK_ROWS):
        block_labels = labels[start : start + _CHUNK_ROWS]
        members = np.flatnonzero(block_labels >= 0)
        indicator = sparse.csr_matrix(
            (np.ones(len(members)), (block_labels[members], members)), shape=(n_clusters, len(block_labels))
        )
        sums += indicator @ np.asarray(vectors[start : start + _CHUNK_ROWS], dtype=np.float64)
    counts = np.bincount(labels[labels >= 0], minlength=n_clusters).astype(np.float64)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and Euclidean distance to the nearest centroid of every row, streamed in chunks."""
    nearest = np.empty(len(vectors), dtype=np.int32)
    distance = np.empty(len(vectors), dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", centroids, centroids)
    for start in range(0, len(vectors), _CHUNK_ROWS):
        block = np.asarray(vectors[start : start + _CHUNK_ROWS], dtype=np.float32)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every c, so argmin skips it.
        partial = squared_norms[None, :] - 2.0 * (block @ centroids.T)
        best = np.argmin(partial, axis=1)
        nearest[start : start + len(block)] = best
        row_norms = np.einsum("ij,ij->i", block, block)
        squared = row_norms + partial[np.arange(len(block)), best]
        distance[start : start + len(block)] = np.sqrt(np.maximum(squared, 0.0))
    return nearest, distance
