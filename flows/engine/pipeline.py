"""The clustering engine: a model fitted on a bounded sample, then every document assigned batch by batch.

Pure numpy / scikit-learn: nothing here knows about Prefect, Dask or where documents live.
A run is three steps, none of which holds the collection in memory:

1. `fit_model(sample, config, ...)`: normalise, reduce (PCA fitted on the sample) and
   cluster a uniform sample of the collection (`sample_size`, else `default_sample_size`:
   the whole collection when it fits). Centroid-based algorithms start from the best of
   `n_init` k-means++ seedings refined by Lloyd's algorithm on a sub-sample, which is what
   keeps `minibatch_kmeans` out of the local minima its library defaults stop in.
2. `assign(model, ids, vectors)`: one batch of documents to their stable cluster ids and
   distances, with the batch's sufficient statistics (`Tally`). Batches are independent of
   each other, so the same answer comes back in-process or from a Dask cluster.
3. `summarize(fitted, tally)`: counts and quality scores from the summed statistics.

Documents of the fit sample keep the label the algorithm gave them (HDBSCAN's noise stays
noise); every other document goes to its nearest centroid in the space the algorithm saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import numpy as np

from prefect_cluster_triggers.core.clustering_config import AlgorithmConfig, MiniBatchKMeansConfig
from prefect_cluster_triggers.core.errors import DataError
from prefect_cluster_triggers.flows.engine.cluster_ids import stable_cluster_ids
from prefect_cluster_triggers.flows.engine.clusterers import (
    CENTROID_BASED,
    available_memory,
    check_feasible,
    make_clusterer,
)
from prefect_cluster_triggers.flows.engine.conditions import Pass, pass_over
from prefect_cluster_triggers.flows.engine.geometry import cluster_means, nearest_centroid
from prefect_cluster_triggers.flows.engine.keywords import cluster_keywords
from prefect_cluster_triggers.flows.engine.metrics import SILHOUETTE_SAMPLE, scores_from, silhouette_of
from prefect_cluster_triggers.flows.engine.preprocess import normalize_rows, reduce_dimensions

STREAM_FIT_ROWS = 131_072
"""Default fit sample of the centroid-based algorithms: 32 minibatches of 4096, plenty for
centroids (their error shrinks with the square root of the rows per cluster)."""
"""Rows on which the k-means++ seedings are run and compared (at least 50 per cluster)."""
_SAMPLE_MEMORY_SHARE = 16
"""The default fit sample of the other algorithms takes at most 1/16 of available memory as
float32: their fits make several copies (PCA, neighbour graphs, HDBSCAN's trees)..."""
SAMPLE_ROWS_CAP = 200_000
"""... and at most this many documents: their fit time grows faster than the documents
(HDBSCAN fitted on 200k of 2M x 384 documents took 123 s here; on 800k, over seven minutes)."""


@dataclass(frozen=True)
class Documents:
    """Documents in memory (a fit sample): ids, one float32 matrix, and text for keywords (may be empty)."""

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
class Model:
    """What assigning a batch needs; small, so it is sent to every Dask worker once."""

    normalize: bool
    basis: Any  # a fitted PCA, or None
    fit_centroids: np.ndarray  # in the space the algorithm saw (after PCA), for nearest-centroid assignment
    centroids: np.ndarray  # normalised full-dimensional space: where runs are compared and distances measured
    cluster_ids: np.ndarray  # the stable id of each label
    kept: dict[str, int] | None  # the fit sample's own labels, for algorithms whose labels are not nearest-centroid


@dataclass(frozen=True)
class Fitted:
    """A fitted model and what is learned from its sample alone."""

    model: Model
    next_cluster_id: int
    keywords: list[list[str]]
    silhouette: float | None
    sample_size: int  # documents fitted on
    sampled: bool  # True when that was fewer than the collection


@dataclass
class Tally:
    """Sufficient statistics of assigned documents; tallies of batches add up to the collection's.

    `passes` holds, per stored piece the documents came from (Lance fragments), the
    condition pass against the run's centroids: stored with the run, it spares the condition
    checks that follow a full read of what has not changed since.
    """

    documents: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    distance_sums: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    squared_distance_sum: float = 0.0
    similarity_sum: float = 0.0
    passes: dict[Hashable, Pass] = field(default_factory=dict)

    def __add__(self, other: Tally) -> Tally:
        passes = dict(self.passes)
        for piece, found in other.passes.items():  # a piece may span two parts
            passes[piece] = passes[piece] + found if piece in passes else found
        return Tally(self.documents + other.documents, _added(self.counts, other.counts),
                     _added(self.distance_sums, other.distance_sums),
                     self.squared_distance_sum + other.squared_distance_sum, self.similarity_sum + other.similarity_sum,
                     passes)


@dataclass(frozen=True)
class Summary:
    """A whole run's figures, ready for its record."""

    num_documents: int
    num_noise: int
    num_members: np.ndarray
    metrics: dict[str, float | None]
    mean_similarity: float  # baseline of cosine_drift: mean cosine similarity to the nearest centroid


def default_sample_size(config: AlgorithmConfig, dimension: int) -> int:
    """Documents a fit uses when `sample_size` is not set."""
    if config.sample_size is not None:
        return config.sample_size
    if isinstance(config, MiniBatchKMeansConfig):
        return STREAM_FIT_ROWS
    return max(10_000, min(SAMPLE_ROWS_CAP, available_memory() // (_SAMPLE_MEMORY_SHARE * 4 * max(dimension, 1))))


def fit_model(sample: Documents, config: AlgorithmConfig, *, num_documents: int,
              previous: PreviousClusters | None) -> Fitted:
    """Fit `config`'s algorithm on `sample` (a uniform sample of `num_documents` documents, or all of them).

    Raises:
        DataError: empty collection, NaN or inf values.
        ClusteringRefused: the algorithm cannot work on this many documents.
    """
    check_feasible(config, len(sample.ids))
    full = np.array(sample.vectors, dtype=np.float32)  # the run's own copy, normalised in place
    check_finite(full, sample.ids)
    if config.normalize:
        normalize_rows(full)
    space, basis = reduce_dimensions(full, config.reduce)
    labels, fit_centroids = _cluster(space, config)
    n_clusters = len(fit_centroids)
    centroids = cluster_means(full, labels, n_clusters)
    ids, next_id = stable_cluster_ids(
        centroids,
        previous.ids if previous else np.empty(0, dtype=np.int64),
        previous.centroids if previous else np.empty((0, full.shape[1]), dtype=np.float32),
        previous.next_id if previous else 0,
    )
    kept = None if isinstance(config, CENTROID_BASED) else dict(zip(map(str, sample.ids), labels.tolist()))
    model = Model(config.normalize, basis, fit_centroids, centroids, ids, kept)
    return Fitted(
        model=model,
        next_cluster_id=next_id,
        keywords=cluster_keywords(sample.texts, labels, n_clusters),
        silhouette=silhouette_of(full, labels, random_state=42, size=SILHOUETTE_SAMPLE),
        sample_size=len(sample.ids),
        sampled=len(sample.ids) < num_documents,
    )


def assign(model: Model, ids: Sequence[str], vectors: np.ndarray,
           piece: Hashable | None = None) -> tuple[np.ndarray, np.ndarray, Tally]:
    """One batch's stable cluster id (-1 = noise) and distance to its centroid (NaN for noise), and its tally.

    `piece`: the stored piece all the batch's rows come from (`DocumentBatch.piece`), if known.
    """
    full = np.array(vectors, dtype=np.float32)
    check_finite(full, ids)
    if model.normalize:
        normalize_rows(full)
    k = len(model.centroids)
    if k == 0:
        noise = np.full(len(full), -1, np.int64)
        return noise, np.full(len(full), np.nan, np.float32), Tally(len(full), np.zeros(0, np.int64))
    # The pass of cosine_drift and centroid_shift, on the vectors as stored: what a check computes.
    condition_pass = pass_over(vectors, model.centroids, with_sums=piece is not None)
    space = full if model.basis is None else model.basis.transform(full).astype(np.float32, copy=False)
    labels, _ = nearest_centroid(space, model.fit_centroids)
    if model.kept is not None:
        own = np.fromiter((model.kept.get(i, -2) for i in map(str, ids)), dtype=np.int32, count=len(full))
        labels = np.where(own != -2, own, labels).astype(np.int32)
    members = labels >= 0
    distance = np.full(len(full), np.nan, dtype=np.float32)
    difference = full[members] - model.centroids[labels[members]]
    distance[members] = np.sqrt(np.einsum("ij,ij->i", difference, difference))
    member_labels, member_distance = labels[members], distance[members].astype(np.float64)
    tally = Tally(
        documents=len(full),
        counts=np.bincount(member_labels, minlength=k).astype(np.int64),
        distance_sums=np.bincount(member_labels, weights=member_distance, minlength=k),
        squared_distance_sum=float(np.sum(member_distance**2)),
        similarity_sum=condition_pass.similarity_sum,
        passes={} if piece is None else {piece: condition_pass},
    )
    return np.where(members, model.cluster_ids[np.maximum(labels, 0)], -1), distance, tally


def summarize(fitted: Fitted, tally: Tally) -> Summary:
    """The run's figures from the summed tallies of every batch."""
    if tally.documents == 0:
        raise DataError("the collection is empty: nothing to cluster")
    k = len(fitted.model.centroids)
    counts = tally.counts if len(tally.counts) else np.zeros(k, np.int64)
    distance_sums = tally.distance_sums if len(tally.distance_sums) else np.zeros(k)
    return Summary(
        num_documents=tally.documents,
        num_noise=tally.documents - int(counts.sum()),
        num_members=counts,
        metrics=scores_from(counts, fitted.model.centroids, distance_sums, tally.squared_distance_sum,
                            fitted.silhouette),
        mean_similarity=tally.similarity_sum / tally.documents if k else 0.0,
    )


def check_finite(vectors: np.ndarray, ids: Sequence[str]) -> None:
    """Refuse NaN or infinite values, naming the first document that has one.

    Raises:
        DataError: a document has a NaN or infinite value.
    """
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"document {ids[row]!r} has a NaN or infinite value")


def _added(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per-cluster sums; an empty array is a tally with no clusters yet (the start, or a run with none)."""
    return right if not len(left) else left if not len(right) else left + right


def _cluster(space: np.ndarray, config: AlgorithmConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the sample and one centroid per label, in the space fitted on."""
    fitted = make_clusterer(config).fit(space)
    return fitted.labels, fitted.centroids


