"""Condition metrics against direct in-memory formulas, and their behaviour on drifting data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from prefect_cluster_triggers.flows import conditions
from prefect_cluster_triggers.flows.conditions import Baseline


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def clustered() -> tuple[np.ndarray, Baseline]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 32)) * 4
    vectors = (centers[rng.integers(0, 4, 5000)] + rng.normal(size=(5000, 32))).astype(np.float32)
    labels = np.argmax(_unit(vectors) @ _unit(centers).T, axis=1)
    centroids = np.stack([_unit(vectors)[labels == j].mean(axis=0) for j in range(4)]).astype(np.float32)
    baseline = Baseline(centroids, conditions.mean_similarity(vectors, centroids), len(vectors),
                        float(silhouette_score(_unit(vectors)[:3000], labels[:3000])))
    return vectors, baseline


@pytest.mark.parametrize("chunk_rows", [1000, 65_536])
def test_mean_similarity_streams_to_the_in_memory_value(clustered, chunk_rows: int, monkeypatch) -> None:
    vectors, baseline = clustered
    monkeypatch.setattr(conditions, "_CHUNK_ROWS", chunk_rows)
    direct = np.mean(np.max(_unit(vectors) @ _unit(baseline.centroids).T, axis=1))
    assert conditions.mean_similarity(vectors, baseline.centroids) == pytest.approx(direct, abs=1e-5)


def test_metrics_are_zero_right_after_clustering(clustered) -> None:
    vectors, baseline = clustered
    assert conditions.cosine_drift(vectors, baseline) == pytest.approx(0.0, abs=1e-6)
    assert conditions.centroid_shift(vectors, baseline) == pytest.approx(0.0, abs=1e-5)
    assert conditions.document_growth(len(vectors), baseline) == 0.0
    assert abs(conditions.silhouette_drop(vectors, baseline)) < 0.05


def test_off_distribution_documents_drift_and_in_distribution_ones_do_not(clustered) -> None:
    vectors, baseline = clustered
    rng = np.random.default_rng(1)
    same = vectors[rng.integers(0, len(vectors), 2000)] + rng.normal(scale=0.1, size=(2000, 32)).astype(np.float32)
    new = (rng.normal(size=(2000, 32)) * 4).astype(np.float32)
    assert conditions.cosine_drift(np.concatenate([vectors, same]), baseline) < 0.01
    drifted = np.concatenate([vectors, new])
    assert conditions.cosine_drift(drifted, baseline) > 0.1
    assert conditions.centroid_shift(drifted, baseline) > conditions.centroid_shift(np.concatenate([vectors, same]), baseline)
    assert conditions.document_growth(len(drifted), baseline) == pytest.approx(0.4)
    assert conditions.silhouette_drop(drifted, baseline) > 0.05


def test_a_memory_map_streams_like_an_array(clustered, tmp_path) -> None:
    vectors, baseline = clustered
    path = tmp_path / "v.f32"
    vectors.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=vectors.shape)
    assert conditions.cosine_drift(mapped, baseline) == pytest.approx(conditions.cosine_drift(vectors, baseline))
