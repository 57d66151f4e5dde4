"""A 2-D picture of a run's clusters: PCA of a bounded, seeded sample of its vectors.

A scatter of every document is neither drawable nor readable past a few thousand points,
and a picture that changes between two renderings of the same run is confusing; so the
sample is at most `size` rows (default 2,000), drawn with a fixed seed, and every cluster
(noise included) keeps a few points even when it is tiny next to the others. PCA is one
SVD of the centred sample (O(size * dimension^2) at most), with signs fixed as scikit-learn's
`svd_flip` does, so the same input always gives the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_SIZE = 2000
DEFAULT_SEED = 0
_FLOOR_SHARE = 4  # every cluster keeps up to size / (_FLOOR_SHARE * clusters) points


@dataclass(frozen=True)
class Projection:
    """Sampled rows of a run in the plane of their two main axes."""

    points: np.ndarray = field(repr=False, compare=False)  # (m, 2) float64
    clusters: np.ndarray = field(repr=False, compare=False)  # (m,) int64, -1 noise
    rows: np.ndarray = field(repr=False, compare=False)  # (m,) the sampled rows of the input, ascending
    explained: tuple[float, float]  # share of the sample's variance along each axis
    total: int  # rows in the input
    centroids: np.ndarray | None = field(default=None, repr=False, compare=False)  # (k, 2) when given


def project_sample(vectors: Any, clusters: Any, *, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
                   normalize: bool = False, centroids: Any = None) -> Projection:
    """Project at most `size` rows of `vectors` (n x d; an array or memory map) onto the sample's two
    principal axes. `normalize` scales rows to unit length first, as a run with `normalize: true`
    clustered them; `centroids` (k x d), if given, are placed in the same plane."""
    labels = np.asarray(clusters).astype(np.int64, copy=False)
    n = len(labels)
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if np.ndim(vectors) != 2 or len(vectors) != n:
        raise ValueError(f"vectors must be an n x d array with one row per label ({n}), got shape {np.shape(vectors)}")
    rows = sample_rows(labels, size=size, seed=seed)
    sample = np.asarray(vectors[rows], dtype=np.float64)
    if not np.isfinite(sample).all():
        raise ValueError("vectors hold NaN or infinite values")
    if normalize:
        sample = _unit(sample)
    mean = sample.mean(axis=0) if len(sample) else np.zeros(sample.shape[1])
    axes, explained = _principal_axes(sample - mean)
    placed = None
    if centroids is not None:
        centres = np.asarray(centroids, dtype=np.float64).reshape(-1, sample.shape[1])
        placed = ((_unit(centres) if normalize else centres) - mean) @ axes.T
    return Projection(points=(sample - mean) @ axes.T, clusters=labels[rows], rows=rows, explained=explained,
                      total=n, centroids=placed)


def sample_rows(clusters: np.ndarray, *, size: int, seed: int) -> np.ndarray:
    """At most `size` row numbers, ascending: uniform, except that each cluster first gets up to
    size / (4 * clusters) of its rows (at least one), so small clusters stay visible."""
    n = len(clusters)
    if n <= size:
        return np.arange(n)
    priority = np.random.default_rng(seed).random(n)
    order = np.lexsort((priority, clusters))
    starts = np.flatnonzero(np.r_[True, clusters[order][1:] != clusters[order][:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    floor = max(1, size // (_FLOOR_SHARE * len(starts)))
    kept = np.zeros(n, dtype=bool)
    kept[order[rank < floor]] = True
    if kept.sum() > size:  # more clusters than points: the first points by priority
        kept[np.flatnonzero(kept)[np.argsort(priority[kept])[size:]]] = False
    rest = np.flatnonzero(~kept)
    kept[rest[np.argsort(priority[rest])[: size - int(kept.sum())]]] = True
    return np.flatnonzero(kept)


def _principal_axes(centred: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """The two leading right singular vectors (2 x d, rows zero-padded when the rank is lower) and
    their share of the variance; signs fixed so each axis' largest coordinate is positive."""
    d = centred.shape[1]
    axes = np.zeros((2, d))
    if not len(centred) or d == 0:
        return axes, (0.0, 0.0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    take = min(2, len(vt))
    axes[:take] = vt[:take]
    biggest = np.argmax(np.abs(axes), axis=1)
    axes *= np.where(axes[np.arange(2), biggest] < 0, -1.0, 1.0)[:, None]
    variance = singular ** 2
    total = float(variance.sum())
    shares = [float(variance[i]) / total if total > 0 and i < take else 0.0 for i in range(2)]
    return axes, (shares[0], shares[1])


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
