"""Preprocessing before clustering: L2 normalisation, PCA reduction, fitting on a sample.

Written to keep peak memory at one copy of the matrix: normalisation is in place and
chunked, so a 200k x 384 float32 collection costs 300 MB once, not three times.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from prefect_cluster_triggers.core.clustering_config import Reduce

if TYPE_CHECKING:  # scikit-learn is imported where PCA runs: storage imports this module for its sampling alone
    from sklearn.decomposition import PCA

_CHUNK_ROWS = 16_384


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise each row in place (zero rows stay zero) and return the same array."""
    for start in range(0, len(vectors), _CHUNK_ROWS):
        block = vectors[start : start + _CHUNK_ROWS]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        np.divide(block, norms, out=block, where=norms > 0)
    return vectors


def reduce_dimensions(vectors: np.ndarray, reduce: Reduce, *, random_state: int = 42) -> tuple[np.ndarray, PCA | None]:
    """Project onto the top principal components (returning the fitted PCA, which projects
    every later batch the same way), or return the vectors untouched and None.

    `n_components` is clamped to what the data supports, so the HDBSCAN default (16) also
    works on low-dimensional collections.
    """
    if reduce.method == "none" or reduce.n_components is None:
        return vectors, None
    n_components = min(reduce.n_components, vectors.shape[1], len(vectors))
    if n_components >= vectors.shape[1]:
        return vectors, None
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=random_state)
    return pca.fit_transform(vectors).astype(np.float32, copy=False), pca


def sample_rows(n_rows: int, sample_size: int | None, *, random_state: int = 42) -> np.ndarray | None:
    """Sorted row indices to fit on, or None when every row is used."""
    if sample_size is None or sample_size >= n_rows:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_rows, size=sample_size, replace=False))


def reservoir(batches: Iterable[tuple[Sequence[str], np.ndarray, Sequence[Any]]], size: int, *,
              random_state: int = 42) -> tuple[list[str], np.ndarray, list[Any], int]:
    """A uniform sample of at most `size` rows of a stream of (ids, vectors, extras) batches, in one pass.

    Bottom-k sampling: every row draws a random key and the `size` smallest keys are kept, so
    memory is the sample's whatever the stream's length. Returns the sample's ids, vectors and
    extras in stream order (all of a short stream comes back as it was), and how many rows
    the stream had.
    """
    rng = np.random.default_rng(random_state)
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (keys, vectors, positions) until `size` is passed
    keys = vectors = positions = None  # then the `size` rows with the smallest keys
    ids: list[str] = []
    extras: list[Any] = []
    seen = 0
    for batch_ids, batch_vectors, batch_extras in batches:
        batch_keys = rng.random(len(batch_ids))
        batch_extras = list(batch_extras) if len(batch_extras) else [None] * len(batch_ids)
        rows = np.arange(len(batch_ids))
        if keys is None:
            held.append((batch_keys, np.asarray(batch_vectors, dtype=np.float32), seen + rows))
            ids += list(batch_ids)
            extras += batch_extras
            seen += len(batch_ids)
            if seen > size:
                all_keys = np.concatenate([k for k, _, _ in held])
                chosen = np.argpartition(all_keys, size - 1)[:size]
                keys, positions = all_keys[chosen], np.concatenate([p for _, _, p in held])[chosen]
                vectors = np.concatenate([v for _, v, _ in held])[chosen]
                ids, extras, held = [ids[i] for i in chosen], [extras[i] for i in chosen], []
            continue
        entering = rows[batch_keys < keys.max()]
        if len(entering):
            merged = np.concatenate([keys, batch_keys[entering]])
            chosen = np.argpartition(merged, size - 1)[:size]
            freed = np.flatnonzero(~np.isin(np.arange(size), chosen[chosen < size], assume_unique=True))
            incoming = entering[chosen[chosen >= size] - size]
            keys[freed], vectors[freed], positions[freed] = batch_keys[incoming], batch_vectors[incoming], seen + incoming
            for slot, row in zip(freed.tolist(), incoming.tolist()):
                ids[slot], extras[slot] = batch_ids[row], batch_extras[row]
        seen += len(batch_ids)
    if keys is None:  # the whole stream fitted
        if not held:
            return [], np.empty((0, 0), np.float32), [], 0
        return ids, np.concatenate([v for _, v, _ in held]), extras, seen
    order = np.argsort(positions, kind="stable")
    return [ids[i] for i in order], vectors[order], [extras[i] for i in order], seen


def sample_of(snapshots: Sequence[Any], size: int, *, random_state: int = 42) -> tuple[list[str], np.ndarray, list[Any], int]:
    """A uniform sample of at most `size` documents of several pinned collections together (ids,
    vectors, payloads) and their document count.

    Each collection is sampled on its own (`snapshot.sample`: random rows of a Lance table,
    one reservoir pass over a stream), then the samples are cut in proportion to the
    collections' sizes, so every document had the same chance whichever collection holds it.
    """
    drawn = [snapshot.sample(size, random_state=random_state) for snapshot in snapshots]
    total = sum(count for *_, count in drawn)
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    payloads: list[Any] = []
    for part_ids, part_vectors, part_payloads, count in drawn:
        keep = len(part_ids) if total <= size else min(len(part_ids), round(size * count / total))
        rows = sample_rows(len(part_ids), keep, random_state=random_state)  # at random: samples come in stream order
        rows = np.arange(len(part_ids)) if rows is None else rows
        ids += [part_ids[i] for i in rows]
        vectors.append(part_vectors[rows])
        payloads += [part_payloads[i] for i in rows]
    matrix = np.concatenate([v for v in vectors if len(v)]) if any(len(v) for v in vectors) else np.empty((0, 0))
    return ids, matrix, payloads, total
