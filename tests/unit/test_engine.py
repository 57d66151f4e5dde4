"""The clustering engine without a server: every algorithm, refusals, scores, stable ids, keywords."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score

from prefect_cluster_triggers.deployments.clustering_config import ALGORITHMS
from prefect_cluster_triggers.flows import engine
from prefect_cluster_triggers.flows.cluster_ids import stable_cluster_ids
from prefect_cluster_triggers.flows.clusterers import check_feasible
from prefect_cluster_triggers.flows.errors import ClusteringRefused, DataError
from prefect_cluster_triggers.flows.keywords import cluster_keywords
from prefect_cluster_triggers.flows.metrics import member_distances, quality_scores


def _blobs(n: int = 600, centers: int = 4, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    vectors, truth = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=0.6, random_state=seed,
                                center_box=(-10, 10))
    return vectors.astype(np.float32), truth


def _run(vectors: np.ndarray, config: dict, previous: engine.PreviousClusters | None = None) -> engine.Outcome:
    parsed = ALGORITHMS[config["algorithm"]].model_validate(config)
    documents = engine.Documents([str(i) for i in range(len(vectors))], vectors.copy())
    full, fit_space = engine.prepare(documents, parsed)
    return engine.score(full, engine.fit(full, fit_space, parsed), (), previous)


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
    vectors, truth = _blobs()
    labels = truth.astype(np.int32)
    centroids = np.stack([vectors[labels == k].mean(axis=0) for k in range(4)])
    distances = member_distances(vectors, labels, centroids)
    scores = quality_scores(vectors, labels, centroids, distances)
    assert scores["davies_bouldin_index"] == pytest.approx(davies_bouldin_score(vectors, labels), rel=1e-4)
    assert scores["calinski_harabasz_score"] == pytest.approx(calinski_harabasz_score(vectors, labels), rel=1e-4)
    assert 0.5 < scores["silhouette_score"] <= 1


def test_second_run_keeps_cluster_ids_and_new_clusters_get_new_ids() -> None:
    vectors, _ = _blobs(centers=4)
    first = _run(vectors, {"algorithm": "kmeans", "n_clusters": 4})
    previous = engine.PreviousClusters(first.cluster_ids, first.centroids, first.next_cluster_id)
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
    with pytest.raises(DataError, match="document '17' \\(row 17\\)"):
        _run(vectors, {"algorithm": "kmeans", "n_clusters": 2})


def test_keywords_rank_terms_that_set_a_cluster_apart() -> None:
    texts = ["red apple fruit", "green apple fruit", "fast car engine", "red car engine", ""]
    labels = np.array([0, 0, 1, 1, -1])
    keywords = cluster_keywords(texts, labels, 2)
    assert keywords[0][:2] == ["apple", "fruit"] or set(keywords[0][:2]) == {"apple", "fruit"}
    assert set(keywords[1][:2]) == {"car", "engine"}
    assert cluster_keywords(["", ""], np.array([0, 1]), 2) == [[], []]
