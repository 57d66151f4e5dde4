"""Condition metrics against direct in-memory formulas, and their behaviour on drifting data."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from prefect_cluster_triggers.blocks.files import fragment_pieces, lance_documents
from prefect_cluster_triggers.blocks.files.lance_documents import LanceDocuments, record_batch
from prefect_cluster_triggers.blocks.files.result_files import ResultFiles
from prefect_cluster_triggers.core.clustering_config import KMeansConfig
from prefect_cluster_triggers.deployments.evaluator.condition_check import PassCache, collection_pass
from prefect_cluster_triggers.flows.engine import conditions, pipeline
from prefect_cluster_triggers.flows.engine.assignment import assign_parts
from prefect_cluster_triggers.flows.engine.conditions import Baseline, centroid_shift_of, cosine_drift_of
from prefect_cluster_triggers.flows.engine.metrics import SILHOUETTE_SAMPLE
from prefect_cluster_triggers.flows.engine.preprocess import sample_of


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


class _Counting(LanceDocuments):
    """A Lance collection that counts the rows its condition-check pieces read."""

    read = 0

    def snapshot(self):
        snapshot = super().snapshot()
        counting = self

        class _Snapshot:
            def pieces(self):
                return [_CountedPiece(piece, counting) for piece in snapshot.pieces()]

        return _Snapshot()


class _CountedPiece:
    def __init__(self, piece, owner: _Counting) -> None:
        self.state, self._piece, self._owner = piece.state, piece, owner

    def vectors(self):
        return self._counted(self._piece.vectors())

    def changes_since(self, earlier):
        changes = self._piece.changes_since(earlier)
        if changes is None:
            return None
        added, removed = changes
        self._owner.read += sum(len(block) for block in removed)
        return self._counted(added), removed

    def _counted(self, blocks):
        for block in blocks:
            self._owner.read += len(block)
            yield block


def test_a_repeated_check_reads_only_what_changed_and_equals_a_full_pass(clustered, tmp_path) -> None:
    """Checks reuse the passes over fragments that did not change; after updates, deletes and
    appends the metrics are those of one pass over the collection as it is."""
    vectors, baseline = clustered
    ids = [f"doc-{i}" for i in range(len(vectors))]
    table = _Counting(str(tmp_path / "db"), "docs")
    for start in range(0, 5000, 1000):  # five adds, five fragments
        table.upsert([record_batch(vectors[start : start + 1000], ids[start : start + 1000])])
    cache = PassCache()

    def check() -> tuple[float, float]:
        drift = cosine_drift_of(collection_pass([table], baseline.centroids, ["docs"], with_sums=False, cache=cache), baseline)
        shift = centroid_shift_of(collection_pass([table], baseline.centroids, ["docs"], with_sums=True, cache=cache), baseline)
        return drift, shift

    def in_memory() -> np.ndarray:
        return np.concatenate([b.vectors for b in table.batches(ids=False)])

    first = check()
    assert table.read == 2 * 5000
    assert check() == first and table.read == 2 * 5000  # nothing changed: nothing read

    rng = np.random.default_rng(3)
    drifted = (rng.normal(size=(10, 32)) * 4).astype(np.float32)
    table.upsert([record_batch(drifted, ids[:10])])  # 10 updated
    table.delete(ids[100:105])  # 5 deleted
    table.upsert([record_batch((rng.normal(size=(200, 32)) * 4).astype(np.float32), [f"new-{i}" for i in range(200)])])
    table.read = 0
    drift, shift = check()
    now = in_memory()
    assert len(now) == 5000 - 5 + 200
    assert drift == pytest.approx(conditions.cosine_drift(now, baseline), abs=1e-9)
    assert shift == pytest.approx(conditions.centroid_shift(now, baseline), abs=1e-9)
    assert drift > first[0]
    # Each metric reads the 15 rows deleted from the first fragment (the update deleted 10, the delete 5) and the
    # two new fragments (the 10 updated documents, the 200 new ones); not the 985 rows left in the first
    # fragment, nor the four fragments nobody wrote to.
    assert table.read == 2 * (15 + 10 + 200)


def test_the_first_check_after_a_clustering_reads_only_what_was_written_since(clustered, tmp_path, monkeypatch) -> None:
    """A clustering run stores its pass over each fragment with its results; a check in a process
    that has never read the collection takes them from there and reads only the fragments
    written since, with the values of a full pass."""
    vectors, _ = clustered
    ids = [f"doc-{i}" for i in range(len(vectors))]
    table = _Counting(str(tmp_path / "db"), "docs")
    for start in range(0, 5000, 1000):  # five adds, five fragments
        table.upsert([record_batch(vectors[start : start + 1000], ids[start : start + 1000])])
    monkeypatch.setattr(lance_documents, "PART_ROWS", 700)  # fragments span parts, parts span fragments
    monkeypatch.setattr(fragment_pieces, "ALONE_ROWS", 1000)  # each of the five is a piece of its own
    snapshot = LanceDocuments.snapshot(table)
    sample = pipeline.Documents(ids, vectors)
    fitted = pipeline.fit_model(sample, KMeansConfig(algorithm="kmeans", n_clusters=4), num_documents=5000, previous=None)
    files = ResultFiles(str(tmp_path / "results"))
    with files.new_run("trigger", "run-1") as run:
        tally = assign_parts(fitted.model, snapshot.parts(), run.write_members)
        run.commit({"run_id": "run-1"}, fitted.model.centroids, tally.passes)
    assert len(tally.passes) == 5 and sum(p.documents for p in tally.passes.values()) == 5000

    latest = files.latest("trigger")
    baseline = Baseline(latest.centroids, tally.similarity_sum / 5000, 5000, None)

    def check(cache: PassCache) -> tuple[float, float]:
        drift = cosine_drift_of(collection_pass([table], latest.centroids, ["docs"], with_sums=False, cache=cache,
                                                stored=latest), baseline)
        shift = centroid_shift_of(collection_pass([table], latest.centroids, ["docs"], with_sums=True, cache=cache,
                                                  stored=latest), baseline)
        return drift, shift

    assert check(PassCache()) == pytest.approx((0.0, 0.0), abs=1e-6) and table.read == 0  # nothing read at all

    rng = np.random.default_rng(3)
    table.upsert([record_batch((rng.normal(size=(10, 32)) * 4).astype(np.float32), ids[:10])])  # 10 updated
    table.delete(ids[1100:1105])  # 5 deleted
    table.upsert([record_batch((rng.normal(size=(200, 32)) * 4).astype(np.float32), [f"new-{i}" for i in range(200)])])
    drift, shift = check(PassCache())  # a new process
    now = np.concatenate([b.vectors for b in table.batches(ids=False)])
    assert drift == pytest.approx(conditions.cosine_drift(now, baseline), abs=1e-7) and drift > 0.01
    assert shift == pytest.approx(conditions.centroid_shift(now, baseline), abs=1e-7) and shift > 0
    # The update deleted 10 rows of the first fragment, the delete 5 of the second, and the updates and the new
    # documents are two new (small) fragments: each metric reads those 225 rows and nothing else.
    assert table.read == 2 * (10 + 5 + 10 + 200)


def test_a_fragment_read_whole_when_its_deleted_rows_cannot_or_need_not_be_read(clustered, tmp_path,
                                                                               monkeypatch) -> None:
    """More rows deleted from a fragment than are left: what is left is read. The version a pass was
    computed at cleaned up since: the fragment is read whole. Either way the values are exact."""
    monkeypatch.setattr(fragment_pieces, "ALONE_ROWS", 1000)  # each fragment is a piece of its own
    vectors, baseline = clustered
    ids = [f"doc-{i}" for i in range(len(vectors))]
    table = _Counting(str(tmp_path / "db"), "docs")
    for start in range(0, 5000, 1000):
        table.upsert([record_batch(vectors[start : start + 1000], ids[start : start + 1000])])
    cache = PassCache()

    def check() -> float:
        return centroid_shift_of(collection_pass([table], baseline.centroids, ["docs"], with_sums=True, cache=cache),
                                 baseline)

    check()
    table.delete(ids[:600])
    table.read = 0
    shift = check()
    assert table.read == 400
    now = np.concatenate([b.vectors for b in table.batches(ids=False)])
    assert shift == pytest.approx(conditions.centroid_shift(now, baseline), abs=1e-9)

    table.dataset(None).cleanup_old_versions(older_than=timedelta(0), delete_unverified=True)
    table.delete(ids[1000:1003])
    table.read = 0
    shift = check()
    assert table.read == 997
    now = np.concatenate([b.vectors for b in table.batches(ids=False)])
    assert shift == pytest.approx(conditions.centroid_shift(now, baseline), abs=1e-9)


def test_small_fragments_share_a_piece_and_what_changed_in_it_is_all_that_is_read(clustered, tmp_path) -> None:
    """A collection filled by many small adds: its passes are kept per 64 fragments, not per fragment,
    and a new fragment, a deleted row or a fragment deleted whole is all a check reads of a piece."""
    vectors, baseline = clustered
    table = _Counting(str(tmp_path / "db"), "docs")
    for add in range(130):  # 130 fragments of 5 documents: pieces of fragment ids 0-63, 64-127, 128-191
        table.upsert([record_batch(vectors[5 * add : 5 * add + 5], [f"doc-{5 * add + i}" for i in range(5)])])
    files = ResultFiles(str(tmp_path / "results"))
    with files.new_run("trigger", "run-1") as run:
        tally = assign_parts(pipeline.Model(True, None, baseline.centroids, baseline.centroids,
                                          np.arange(len(baseline.centroids)), None),
                             LanceDocuments.snapshot(table).parts(), run.write_members)
        run.commit({"run_id": "run-1"}, baseline.centroids, tally.passes)
    latest = files.latest("trigger")
    assert len(latest.passes()) == 3

    table.upsert([record_batch(vectors[1000:1005], [f"new-{i}" for i in range(5)])])  # fragment 130, third piece
    table.delete(["doc-50"])  # one row of fragment 10, first piece
    table.delete([f"doc-{5 * 70 + i}" for i in range(5)])  # fragment 70 whole, second piece
    drift = cosine_drift_of(collection_pass([table], latest.centroids, ["docs"], with_sums=False, cache=PassCache(),
                                            stored=latest), baseline)
    assert table.read == 5 + 1 + 5
    now = np.concatenate([b.vectors for b in table.batches(ids=False)])
    assert len(now) == 650 + 5 - 1 - 5
    assert drift == pytest.approx(conditions.cosine_drift(now, baseline), abs=1e-6)  # a pass taken away: float32 rounding, not a missed row


def test_silhouette_drop_is_measured_on_a_sample_drawn_by_row_number(clustered, tmp_path) -> None:
    """A quality check takes SILHOUETTE_SAMPLE random rows of a Lance collection, not a pass over it."""
    vectors, baseline = clustered
    table = LanceDocuments(str(tmp_path / "db"), "docs")
    table.upsert([record_batch(vectors, [f"doc-{i}" for i in range(len(vectors))])])
    ids, sample, _, total = sample_of([table.snapshot()], SILHOUETTE_SAMPLE)
    assert (len(ids), total) == (SILHOUETTE_SAMPLE, 5000) and len(set(ids)) == SILHOUETTE_SAMPLE
    assert abs(conditions.silhouette_drop(sample, baseline)) < 0.05
    noise = (np.random.default_rng(1).normal(size=(2000, 32)) * 4).astype(np.float32)
    table.upsert([record_batch(noise, [f"new-{i}" for i in range(2000)])])
    _, sample, _, total = sample_of([table.snapshot()], SILHOUETTE_SAMPLE)
    assert total == 7000 and conditions.silhouette_drop(sample, baseline) > 0.05
