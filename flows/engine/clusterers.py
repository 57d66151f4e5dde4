"""One clusterer interface over every algorithm of the contract.

`make_clusterer(config).fit(vectors)` gives labels (noise = -1, clusters 0..k-1) and a
centroid per cluster, whatever the algorithm: density-based algorithms have no centroids of
their own, so centroids are always the mean of the members, the same definition for all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from prefect_cluster_triggers.core.clustering_config import (
    AgglomerativeConfig,
    AlgorithmConfig,
    DBSCANConfig,
    GaussianMixtureConfig,
    HDBSCANConfig,
    KMeansConfig,
    MeanShiftConfig,
    MiniBatchKMeansConfig,
    OPTICSConfig,
    SpectralConfig,
)
from prefect_cluster_triggers.core.errors import ClusteringRefused, DataError
from prefect_cluster_triggers.flows.engine.geometry import cluster_means
from prefect_cluster_triggers.flows.engine.preprocess import sample_rows


@dataclass(frozen=True)
class Clustering:
    """Labels per row (int32, -1 = noise) and one centroid row per cluster label."""

    labels: np.ndarray
    centroids: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.centroids)


class Clusterer(Protocol):
    """Anything that turns a matrix into a `Clustering`."""

    def fit(self, vectors: np.ndarray) -> Clustering: ...


@dataclass(frozen=True)
class _EstimatorClusterer:
    """A scikit-learn style estimator behind the common interface."""

    build: Callable[[], Any]

    def fit(self, vectors: np.ndarray) -> Clustering:
        raw = np.asarray(self.build().fit_predict(vectors))
        labels = _contiguous(raw)
        n_clusters = int(labels.max()) + 1 if (labels >= 0).any() else 0
        return Clustering(labels, cluster_means(vectors, labels, n_clusters))


CENTROID_BASED = (KMeansConfig, MiniBatchKMeansConfig)


def make_clusterer(config: AlgorithmConfig) -> Clusterer:
    """The clusterer for a validated `execution_config.config`."""
    if isinstance(config, CENTROID_BASED):
        return _SeededKMeans(config)
    return _EstimatorClusterer(lambda: _estimator(config))


def check_feasible(config: AlgorithmConfig, n_documents: int, *, memory_bytes: int | None = None) -> None:
    """Refuse, before any work, a clustering that cannot succeed on `n_documents` rows.

    Raises:
        DataError: there are no documents.
        ClusteringRefused: more clusters than documents, or an algorithm whose memory grows
            with the square of the documents on more documents than fit in memory.
    """
    if n_documents == 0:
        raise DataError("the collection is empty: nothing to cluster")
    wanted = _cluster_count(config)
    if wanted is not None and wanted[1] > n_documents:
        name, count = wanted
        raise ClusteringRefused(
            f"{name}={count} but only {n_documents} documents to cluster; set {name} to at most {n_documents}"
        )
    minimum = _min_documents(config)
    if minimum is not None and minimum[1] > n_documents:
        name, count = minimum
        raise ClusteringRefused(f"{config.algorithm} needs at least {name}={count} documents, got {n_documents}")
    bytes_per_pair = _QUADRATIC_BYTES_PER_PAIR.get(type(config))
    if bytes_per_pair is not None:
        budget = memory_bytes if memory_bytes is not None else available_memory()
        needed = bytes_per_pair * n_documents**2
        if needed > budget:
            most = int((budget / bytes_per_pair) ** 0.5)
            raise ClusteringRefused(
                f"{config.algorithm} needs about {needed / 2**30:.1f} GiB for {n_documents} documents (its memory "
                f"grows with the square of the documents) but {budget / 2**30:.1f} GiB is available; use "
                f"minibatch_kmeans or hdbscan instead, or set sample_size to at most {most}"
            )


# Condensed pairwise distances (agglomerative) and dense affinity plus its copies (spectral).
_QUADRATIC_BYTES_PER_PAIR: dict[type, float] = {AgglomerativeConfig: 4.0, SpectralConfig: 24.0}


def _cluster_count(config: AlgorithmConfig) -> tuple[str, int] | None:
    if isinstance(config, GaussianMixtureConfig):
        return "n_components", config.n_components
    count = getattr(config, "n_clusters", None)
    return ("n_clusters", count) if count is not None else None


def _min_documents(config: AlgorithmConfig) -> tuple[str, int] | None:
    if isinstance(config, HDBSCANConfig):
        return "min_cluster_size", config.min_cluster_size
    if isinstance(config, (DBSCANConfig, OPTICSConfig)):
        return "min_samples", config.min_samples
    return None


def available_memory() -> int:
    """Bytes of memory available to this process now (Linux's MemAvailable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _estimator(config: AlgorithmConfig) -> Any:
    # Imports stay local: hdbscan and the less used estimators cost import time for nothing.
    if isinstance(config, HDBSCANConfig):
        import hdbscan

        return hdbscan.HDBSCAN(
            min_cluster_size=config.min_cluster_size, min_samples=config.min_samples,
            cluster_selection_epsilon=config.cluster_selection_epsilon,
            max_cluster_size=config.max_cluster_size or 0, metric=config.metric,
            cluster_selection_method=config.cluster_selection_method,
            allow_single_cluster=config.allow_single_cluster, core_dist_n_jobs=os.cpu_count() or 1,
        )
    if isinstance(config, DBSCANConfig):
        from sklearn.cluster import DBSCAN

        return DBSCAN(eps=config.eps, min_samples=config.min_samples, metric=config.metric)
    if isinstance(config, AgglomerativeConfig):
        from sklearn.cluster import AgglomerativeClustering

        return AgglomerativeClustering(
            n_clusters=config.n_clusters, linkage=config.linkage, distance_threshold=config.distance_threshold
        )
    if isinstance(config, SpectralConfig):
        from sklearn.cluster import SpectralClustering

        return SpectralClustering(
            n_clusters=config.n_clusters, affinity=config.affinity, n_neighbors=config.n_neighbors,
            random_state=config.random_state,
        )
    if isinstance(config, GaussianMixtureConfig):
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(
            n_components=config.n_components, covariance_type=config.covariance_type, max_iter=config.max_iter,
            random_state=config.random_state,
        )
    if isinstance(config, MeanShiftConfig):
        from sklearn.cluster import MeanShift

        return MeanShift(bandwidth=config.bandwidth, bin_seeding=config.bin_seeding, cluster_all=config.cluster_all)
    if isinstance(config, OPTICSConfig):
        from sklearn.cluster import OPTICS

        return OPTICS(
            min_samples=config.min_samples, max_eps=config.max_eps if config.max_eps is not None else np.inf,
            cluster_method=config.cluster_method, xi=config.xi, eps=config.eps,
        )
    raise TypeError(f"no estimator for {type(config).__name__}")


def _contiguous(raw: np.ndarray) -> np.ndarray:
    """Renumber cluster labels 0..k-1 in order of first appearance; noise stays -1."""
    labels = np.full(len(raw), -1, dtype=np.int32)
    members = raw >= 0
    if members.any():
        _, first, inverse = np.unique(raw[members], return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))
        labels[members] = order[inverse]
    return labels


SEEDING_ROWS = 16_384  # rows each k-means++ seeding is refined and compared on


@dataclass(frozen=True)
class _SeededKMeans:
    """k-means (or mini-batch k-means) from the best of `n_init` k-means++ seedings, each refined by
    Lloyd's algorithm on a sub-sample and compared by inertia there.

    scikit-learn's MiniBatchKMeans compares its `n_init` seedings before refining any, on
    3 x batch_size rows: on 20 well-separated blobs it stops in a local minimum (ARI 0.94).
    Refining each seeding on a sub-sample first costs a second here and finds all 20.
    """

    config: KMeansConfig | MiniBatchKMeansConfig

    def fit(self, space: np.ndarray) -> Clustering:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        config = self.config
        rows = sample_rows(len(space), max(SEEDING_ROWS, 50 * config.n_clusters), random_state=config.random_state)
        seeding = space if rows is None else space[rows]
        seeds = KMeans(n_clusters=config.n_clusters, init=config.init, n_init=config.n_init, max_iter=config.max_iter,
                       random_state=config.random_state).fit(seeding).cluster_centers_.astype(np.float32)
        if isinstance(config, MiniBatchKMeansConfig):
            estimator = MiniBatchKMeans(n_clusters=config.n_clusters, init=seeds, n_init=1,
                                        batch_size=config.batch_size, max_iter=config.max_iter, tol=config.tol,
                                        random_state=config.random_state)
        else:
            estimator = KMeans(n_clusters=config.n_clusters, init=seeds, n_init=1, max_iter=config.max_iter,
                               tol=config.tol, random_state=config.random_state, copy_x=False)
        labels = estimator.fit_predict(space).astype(np.int32)
        return Clustering(labels, estimator.cluster_centers_.astype(np.float32))
