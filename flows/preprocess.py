"""Preprocessing before clustering: L2 normalisation, PCA reduction, fitting on a sample.

Written to keep peak memory at one copy of the matrix: normalisation is in place and
chunked, so a 200k x 384 float32 collection costs 300 MB once, not three times.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from prefect_cluster_triggers.deployments.clustering_config import Reduce

_CHUNK_ROWS = 16_384


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise each row in place (zero rows stay zero) and return the same array."""
    for start in range(0, len(vectors), _CHUNK_ROWS):
        block = vectors[start : start + _CHUNK_ROWS]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, norms, out=block, where=norms > 0)
    return vectors


def reduce_dimensions(vectors: np.ndarray, reduce: Reduce, *, random_state: int = 42) -> np.ndarray:
    """Project onto the top principal components, or return the vectors untouched.

    `n_components` is clamped to what the data supports, so the HDBSCAN default (16) also
    works on low-dimensional collections.
    """
    if reduce.method == "none" or reduce.n_components is None:
        return vectors
    n_components = min(reduce.n_components, vectors.shape[1], len(vectors))
    if n_components >= vectors.shape[1]:
        return vectors
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=random_state)
    return pca.fit_transform(vectors).astype(np.float32, copy=False)


def sample_rows(n_rows: int, sample_size: int | None, *, random_state: int = 42) -> np.ndarray | None:
    """Sorted row indices to fit on, or None when every row is used."""
    if sample_size is None or sample_size >= n_rows:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_rows, size=sample_size, replace=False))
