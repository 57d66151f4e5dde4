"""The clustering engine without a server: every algorithm, refusals, scores, stable ids, keywords."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score

from prefect_cluster_triggers.core.clustering_config import ALGORITHMS
from prefect_cluster_triggers.core.errors import ClusteringRefused, DataError
from prefect_cluster_triggers.flows.engine import pipeline
from prefect_cluster_triggers.flows.engine.cluster_ids import stable_cluster_ids
from prefect_cluster_triggers.flows.engine.clusterers import check_feasible
from prefect_cluster_triggers.flows.engine.keywords import cluster_keywords
from prefect_cluster_triggers.flows.engine.preprocess import reservoir


def _blobs(n: int = 600, centers: int = 4, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    vectors, truth = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=0.6, random_state=seed,
                                center_box=(-10, 10))
    return vectors.astype(np.float32), truth


def _run(vectors: np.ndarray, config: dict, previous: pipeline.PreviousClusters | None = None) -> SimpleNamespace:
    """What the flow does, without storage: a reservoir sample of a stream of batches, a fit, every batch assigned."""
    parsed = ALGORITHMS[config["algorithm"]].model_validate(config)
    ids = [str(i) for i in range(len(vectors))]
    batches = [(ids[start : start + 128], vectors[start : start + 128], ()) for start in range(0, len(vectors), 128)]
    sample_ids, sample_vectors, _, seen = reservoir(batches, pipeline.default_sample_size(parsed, vectors.shape[1]))
    fitted = pipeline.fit_model(pipeline.Documents(sample_ids, sample_vectors), parsed, num_documents=seen,
                              previous=previous)
    assigned = [pipeline.assign(fitted.model, batch_ids, batch_vectors) for batch_ids, batch_vectors, _ in batches]
    summary = pipeline.summarize(fitted, sum((tally for *_, tally in assigned), pipeline.Tally()))
    return SimpleNamespace(
        cluster_of=np.concatenate([c for c, _, _ in assigned]), distance=np.concatenate([d for _, d, _ in assigned]),
        cluster_ids=fitted.model.cluster_ids, centroids=fitted.model.centroids, next_cluster_id=fitted.next_cluster_id,
        num_members=summary.num_members, mean_similarity=summary.mean_similarity, metrics=summary.metrics,
        num_documents=summary.num_documents, num_noise=summary.num_noise,
        sample=fitted.sample_size, sampled=fitted.sampled,
    )


CONFIGS = [
    {"algorithm": "kmeans", "n_clusters": 4},
    {"algorithm": "minibatch_kmeans", "n_clusters": 4},
    {"algorithm": "hdbscan", "min_cluster_size": 20},
    {"algorithm": "dbscan", "eps": 0.3, "min_samples": 5, "normalize": False, "reduce": "none"},
    {"algorithm": "agglomerative", "n_clusters": 4},
    {"algorithm": "spectral", "n_clusters": 4, "affinity": "nearest_neighbors"},
    {"algorithm": "gaussian_mixture", "n_components": 4},
    {"algorithm": "mean_shift", "bandwidth": 3.0, "bin_seeding": True, "normalize": False},
    {"algorithm": "optics", "min_samples": 10, "normalize": False},
    {"algorithm": "kmeans", "n_clusters": 4, "sample_size": 200},
    {"algorithm": "kmeans", "n_clusters": 4, "reduce": {"method": "pca", "n_components": 3}},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c['algorithm']}-{len(c)}")
def test_every_algorithm_finds_well_separated_blobs(config: dict) -> None:
    vectors, truth = _blobs(dim=2, seed=3) if config["algorithm"] == "dbscan" else _blobs()
    outcome = _run(vectors, config)
    clustered = outcome.cluster_of >= 0
    assert clustered.mean() > 0.8
    assert adjusted_rand_score(truth[clustered], outcome.cluster_of[clustered]) >= 0.95
    assert len(outcome.centroids) == len(outcome.cluster_ids) == len(outcome.num_members)
    assert np.isnan(outcome.distance[~clustered]).all() and (outcome.distance[clustered] >= 0).all()
    assert 0.5 < outcome.mean_similarity <= 1.0


def test_scores_equal_scikit_learn() -> None:
    vectors, _ = _blobs()
    outcome = _run(vectors, {"algorithm": "kmeans", "n_clusters": 4, "normalize": False})
    labels = outcome.cluster_of
    assert outcome.metrics["davies_bouldin_index"] == pytest.approx(davies_bouldin_score(vectors, labels), rel=1e-4)
    assert outcome.metrics["calinski_harabasz_score"] == pytest.approx(calinski_harabasz_score(vectors, labels), rel=1e-4)
    assert 0.5 < outcome.metrics["silhouette_score"] <= 1


def test_a_sample_fit_assigns_every_document_and_says_so() -> None:
    vectors, truth = _blobs(n=3000)
    outcome = _run(vectors, {"algorithm": "hdbscan", "min_cluster_size": 20, "sample_size": 500})
    assert outcome.sampled and outcome.sample == 500
    clustered = outcome.cluster_of >= 0
    assert clustered.mean() > 0.9
    assert adjusted_rand_score(truth[clustered], outcome.cluster_of[clustered]) >= 0.95
    assert outcome.num_members.sum() == clustered.sum()


def test_minibatch_kmeans_finds_all_twenty_separated_blobs() -> None:
    """scikit-learn's MiniBatchKMeans with the contract's defaults stops in a local minimum here (ARI ~0.94)."""
    vectors, truth = make_blobs(n_samples=20_000, centers=20, n_features=64, cluster_std=1.0, random_state=5,
                                center_box=(-10, 10))
    outcome = _run(vectors.astype(np.float32), {"algorithm": "minibatch_kmeans", "n_clusters": 20, "normalize": False})
    assert adjusted_rand_score(truth, outcome.cluster_of) >= 0.99


def test_second_run_keeps_cluster_ids_and_new_clusters_get_new_ids() -> None:
    vectors, _ = _blobs(centers=4)
    first = _run(vectors, {"algorithm": "kmeans", "n_clusters": 4})
    previous = pipeline.PreviousClusters(first.cluster_ids, first.centroids, first.next_cluster_id)
    shuffled = np.random.default_rng(1).permutation(len(vectors))
    second = _run(vectors[shuffled], {"algorithm": "kmeans", "n_clusters": 4, "random_state": 7}, previous)
    assert (second.cluster_of == first.cluster_of[shuffled]).all()
    more, _ = _blobs(n=150, centers=1, seed=99)
    third = _run(np.concatenate([vectors, more + 40]), {"algorithm": "kmeans", "n_clusters": 5}, previous)
    assert set(third.cluster_ids) == {*first.cluster_ids, first.next_cluster_id}
    assert third.next_cluster_id == first.next_cluster_id + 1


def test_vanished_cluster_ids_are_not_reused() -> None:
    ids, next_id = stable_cluster_ids(
        np.array([[0, 1.0]], dtype=np.float32), np.array([3, 8]), np.array([[1.0, 0], [0.7, 0.7]], dtype=np.float32), 9
    )
    assert list(ids) == [9] and next_id == 10


@pytest.mark.parametrize(
    ("config", "n", "message"),
    [
        ({"algorithm": "kmeans", "n_clusters": 10}, 5, "n_clusters=10 but only 5 documents"),
        ({"algorithm": "gaussian_mixture", "n_components": 10}, 5, "n_components=10"),
        ({"algorithm": "hdbscan", "min_cluster_size": 50}, 10, "min_cluster_size=50"),
        ({"algorithm": "kmeans"}, 0, "empty"),
    ],
)
def test_impossible_clusterings_are_refused(config: dict, n: int, message: str) -> None:
    with pytest.raises((ClusteringRefused, DataError), match=message):
        check_feasible(ALGORITHMS[config["algorithm"]].model_validate(config), n)


def test_quadratic_algorithms_refused_past_memory_naming_alternatives() -> None:
    config = ALGORITHMS["agglomerative"].model_validate({"algorithm": "agglomerative"})
    check_feasible(config, 1000, memory_bytes=2**30)
    with pytest.raises(ClusteringRefused, match="grows with the square.*minibatch_kmeans or hdbscan.*sample_size"):
        check_feasible(config, 100_000, memory_bytes=2**30)


def test_nan_is_named_by_document() -> None:
    vectors, _ = _blobs(n=50)
    vectors[17, 3] = np.nan
    with pytest.raises(DataError, match="document '17' has a NaN"):
        _run(vectors, {"algorithm": "kmeans", "n_clusters": 2})


def test_keywords_rank_terms_that_set_a_cluster_apart() -> None:
    texts = ["red apple fruit", "green apple fruit", "fast car engine", "red car engine", ""]
    labels = np.array([0, 0, 1, 1, -1])
    keywords = cluster_keywords(texts, labels, 2)
    assert keywords[0][:2] == ["apple", "fruit"] or set(keywords[0][:2]) == {"apple", "fruit"}
    assert set(keywords[1][:2]) == {"car", "engine"}
    assert cluster_keywords(["", ""], np.array([0, 1]), 2) == [[], []]


def test_reservoir_sample_is_uniform_and_in_stream_order() -> None:
    n, size = 20_000, 2_000
    vectors = np.arange(n, dtype=np.float32)[:, None]
    batches = [([str(i) for i in range(s, min(s + 700, n))], vectors[s : s + 700], ()) for s in range(0, n, 700)]
    ids, sample, _, seen = reservoir(batches, size, random_state=3)
    rows = sample[:, 0].astype(int)
    assert seen == n and len(ids) == size and ids == [str(r) for r in rows]
    assert (np.diff(rows) > 0).all()  # distinct, in stream order
    counts, _ = np.histogram(rows, bins=10, range=(0, n))
    assert counts.min() > 0.7 * size / 10  # every tenth of the stream is represented
    short_ids, short, _, _ = reservoir(batches[:2], size)
    assert short_ids == [str(i) for i in range(1400)] and (short[:, 0] == np.arange(1400)).all()


def test_a_run_without_clusters_counts_every_document_as_noise() -> None:
    vectors = np.random.default_rng(4).uniform(size=(600, 8)).astype(np.float32)
    outcome = _run(vectors, {"algorithm": "hdbscan", "min_cluster_size": 300, "reduce": "none"})
    assert len(outcome.cluster_ids) == 0 and (outcome.cluster_of == -1).all()
    assert outcome.num_documents == outcome.num_noise == 600  # five batches, all counted
