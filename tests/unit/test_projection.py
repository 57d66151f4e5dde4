"""The 2-D picture of a run (flows/engine/projection.py): bounded, seeded, faithful to planar data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_cluster_triggers.flows.engine.projection import project_sample, sample_rows


def _planar(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points of a plane rotated into d dimensions (rank 2), and a 2-D layout they come from."""
    rng = np.random.default_rng(seed)
    flat = rng.normal(size=(n, 2)) * [3.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    return flat @ basis.T + rng.normal(size=d), flat


def _distances(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None] - points[None], axis=2)


def test_a_plane_in_64_dimensions_keeps_its_distances():
    vectors, flat = _planar(500, 64)
    projection = project_sample(vectors, np.zeros(500, dtype=int))
    assert np.allclose(_distances(projection.points), _distances(flat))
    assert projection.explained[0] > projection.explained[1] and sum(projection.explained) == pytest.approx(1)
    assert projection.total == 500 and list(projection.rows) == list(range(500))


def test_the_sample_is_bounded_seeded_and_keeps_small_clusters():
    rng = np.random.default_rng(1)
    clusters = np.r_[np.zeros(100_000, dtype=int), np.full(5, 7), np.full(20, -1)]
    vectors = rng.normal(size=(len(clusters), 8)).astype(np.float32)
    first = project_sample(vectors, clusters, size=2000, seed=3)
    again = project_sample(vectors, clusters, size=2000, seed=3)
    assert len(first.points) == 2000 and np.array_equal(first.points, again.points)
    assert np.array_equal(first.rows, np.sort(first.rows)) and np.array_equal(first.clusters, clusters[first.rows])
    assert set(first.clusters.tolist()) == {-1, 0, 7}
    assert (first.clusters == 7).sum() == 5  # all of a tiny cluster, not 5 * 2000 / 100,025 = 0.1 point
    assert not np.array_equal(project_sample(vectors, clusters, size=2000, seed=4).rows, first.rows)


def test_centroids_land_in_the_same_plane_and_signs_are_fixed():
    vectors, _ = _planar(300, 16, seed=2)
    clusters = (vectors[:, 0] > np.median(vectors[:, 0])).astype(int)
    centroids = np.stack([vectors[clusters == c].mean(axis=0) for c in (0, 1)])
    projection = project_sample(vectors, clusters, centroids=centroids)
    for c in (0, 1):
        assert np.allclose(projection.centroids[c], projection.points[clusters == c].mean(axis=0))
    flipped = project_sample(-vectors, clusters)  # the same cloud mirrored: the same picture after sign fixing
    assert np.allclose(np.abs(flipped.points), np.abs(projection.points))


def test_degenerate_inputs():
    empty = project_sample(np.zeros((0, 4)), np.zeros(0, dtype=int))
    assert empty.points.shape == (0, 2) and empty.explained == (0.0, 0.0)
    one = project_sample(np.ones((1, 3)), [2])
    assert one.points.tolist() == [[0.0, 0.0]]
    line = project_sample(np.arange(10.0)[:, None], np.zeros(10, dtype=int))
    assert np.allclose(line.points[:, 1], 0) and line.explained == (1.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        project_sample(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="one row per label"):
        project_sample(np.zeros((3, 2)), [0, 1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-1, 30), min_size=1, max_size=400), st.integers(1, 120), st.integers(0, 2**32 - 1))
def test_sample_rows_is_bounded_distinct_and_covers_every_cluster_it_can(labels, size, seed):
    clusters = np.array(labels, dtype=np.int64)
    rows = sample_rows(clusters, size=size, seed=seed)
    assert len(rows) == min(size, len(clusters)) and len(set(rows.tolist())) == len(rows)
    distinct = len(set(labels))
    if distinct <= size:
        assert set(clusters[rows].tolist()) == set(labels)
