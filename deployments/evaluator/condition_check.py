"""One check of a conditional trigger: its metric measured on the collection as it is now.

The baseline is the trigger's last successful clustering (its stored centroids and the
figures recorded with them); the metrics and their formulas are in `flows.conditions`.
A check streams the collections batch by batch (memory is one batch, whatever their size)
and never touches the results, so a failing check changes nothing but its own record.

Checks repeat (every `check_interval_seconds`, for months) while most of a collection stays
as it was. `cosine_drift` and `centroid_shift` add up over any split of the documents
(`conditions.Pass`), and a Lance collection splits into pieces of immutable fragments
(`blocks.files.fragment_pieces`), so a piece's pass against the baseline's centroids is computed
once and brought up to date from what changed in it. The clustering run computes those
passes as it assigns every document and stores them with its results (`StoredRun.passes`);
a check takes them from there the first time it meets that run, in whatever process and on
whatever machine, and keeps them and the passes it computes itself in memory. So the first
check after a clustering reads only the fragments written since it, and the rows deleted
since (an update deletes the old row too), read from the version the pass was computed at;
each later check only what changed since the one before. The values are those of a full pass.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Hashable, Iterable, Iterator

import numpy as np

from prefect_cluster_triggers.blocks.cluster_definition import load_cluster_definition
from prefect_cluster_triggers.blocks.collections import DocumentSource, load_collection
from prefect_cluster_triggers.blocks.files.fragment_pieces import PieceState
from prefect_cluster_triggers.blocks.files.result_files import StoredRun
from prefect_cluster_triggers.blocks.result_store import ResultStore
from prefect_cluster_triggers.core.errors import DataError, NotFound
from prefect_cluster_triggers.flows.engine.conditions import (
    Baseline,
    Pass,
    centroid_shift_of,
    cosine_drift_of,
    document_growth,
    pass_over,
    silhouette_drop,
)
from prefect_cluster_triggers.flows.engine.metrics import SILHOUETTE_SAMPLE
from prefect_cluster_triggers.flows.engine.preprocess import sample_of

_CACHE_BYTES = 64 << 20  # passes kept per process: a pass with sums at 20 x 768 is 123 kB
_SEEDED_RUNS = 4096  # runs whose stored passes were taken, remembered so each is read once (then again if forgotten)


class PassCache:
    """Passes over Lance pieces by piece state and kind of pass (centroids, with sums or not);
    least recently used out first.

    Besides a state's own pass, it gives the newest pass kept over the same piece in another
    state, for the check to bring up to date with what changed since.
    """

    def __init__(self, max_bytes: int = _CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._passes: OrderedDict[tuple[str, Hashable], tuple[PieceState, Pass]] = OrderedDict()
        self._newest: dict[tuple[str, Hashable], PieceState] = {}  # by place: the newest state kept
        self._bytes = 0
        self._lock = threading.Lock()  # checks of several triggers run in threads at once
        self._seeded: OrderedDict[tuple[str, Hashable], None] = OrderedDict()

    def seed(self, run: StoredRun, kind: Hashable, *, with_sums: bool) -> None:
        """Take the passes a clustering run stored, once per run and kind of pass in this process."""
        with self._lock:
            if (run.path, kind) in self._seeded:
                return
            self._seeded[run.path, kind] = None
            if len(self._seeded) > _SEEDED_RUNS:  # triggers re-cluster for months
                self._seeded.popitem(last=False)
        for state, stored in run.passes().items():
            self.put(state, kind, stored if with_sums else _without_sums(stored))

    def get(self, state: PieceState, kind: Hashable) -> Pass | None:
        """The pass kept for this piece state and kind, if any."""
        with self._lock:
            found = self._passes.get((state.key, kind))
            if found is None:
                return None
            self._passes.move_to_end((state.key, kind))
            return found[1]

    def earlier(self, state: PieceState, kind: Hashable) -> tuple[PieceState, Pass] | None:
        """The newest pass kept over the same piece as `state`, in another state."""
        with self._lock:
            newest = self._newest.get((state.place, kind))
            return None if newest is None else self._passes.get((newest.key, kind))

    def put(self, state: PieceState, kind: Hashable, value: Pass) -> None:
        """Keep a pass (the first one wins), forgetting the oldest beyond the cache's bytes."""
        with self._lock:
            if (state.key, kind) in self._passes:
                return
            self._passes[state.key, kind] = (state, value)
            newest = self._newest.get((state.place, kind))
            if newest is None or newest.version <= state.version:
                self._newest[state.place, kind] = state
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes and self._passes:
                (_, dropped_kind), (dropped, evicted) = self._passes.popitem(last=False)
                self._bytes -= evicted.nbytes
                if self._newest.get((dropped.place, dropped_kind)) == dropped:
                    del self._newest[dropped.place, dropped_kind]


_checked_pieces = PassCache()


def measure(store: ResultStore, trigger_id: str, namespace_id: str, metric: str, collection_ids: list[str] | None,
            cluster_id: str | None) -> float | None:
    """The metric now; None when the trigger has not clustered yet (so its first check fires).

    Args:
        store: the server's result store (`default_result_store`), where the baseline run is.
        collection_ids: the trigger's own collections, or None to take its cluster definition's.

    Raises:
        ClusterTriggersError: a collection or definition that cannot be read.
    """
    try:
        latest = store.latest(trigger_id)
    except NotFound:
        return None
    if collection_ids is None:
        collection_ids = load_cluster_definition(cluster_id, namespace_id).execution_config().collection_ids
    record = latest.record
    baseline = Baseline(
        centroids=latest.centroids,
        mean_similarity=float(record["mean_similarity"]),
        num_documents=int(record["num_documents"]),
        silhouette=record["metrics"].get("silhouette_score"),
    )
    sources = [load_collection(c, namespace_id) for c in collection_ids]
    if metric == "document_growth":
        return document_growth(sum(_count(source) for source in sources), baseline)
    if metric == "cosine_drift":
        return cosine_drift_of(collection_pass(sources, baseline.centroids, collection_ids, with_sums=False,
                                               stored=latest), baseline)
    if metric == "centroid_shift":
        return centroid_shift_of(collection_pass(sources, baseline.centroids, collection_ids, with_sums=True,
                                                 stored=latest), baseline)
    _, sample, _, _ = sample_of([source.snapshot() for source in sources], SILHOUETTE_SAMPLE)
    if len(sample):
        _same_dimension(sample, latest.centroids.shape[1], collection_ids)
    return silhouette_drop(sample, baseline)


def collection_pass(sources: Iterable[Any], centroids: np.ndarray, collection_ids: list[str], *, with_sums: bool,
                    cache: PassCache = _checked_pieces, stored: StoredRun | None = None) -> Pass:
    """The pass over every document of `sources` (DocumentSources), reusing the passes of pieces
    read before and those `stored` by the clustering run whose `centroids` these are; the same
    value as one pass over all their vectors."""
    kind = (centroids.shape, hashlib.blake2b(np.ascontiguousarray(centroids).tobytes(), digest_size=16).digest(),
            with_sums)
    if stored is not None:
        cache.seed(stored, kind, with_sums=with_sums)

    def over(blocks: Iterable[np.ndarray]) -> Pass:
        return pass_over(_checked(blocks, centroids.shape[1], collection_ids), centroids, with_sums=with_sums)

    total = over([])
    for source in sources:
        for piece in source.snapshot().pieces():
            if piece.state is None:  # a stream: read whole every time
                total = total + over(piece.vectors())
                continue
            found = cache.get(piece.state, kind)
            if found is None:
                earlier = cache.earlier(piece.state, kind)
                changes = None if earlier is None else piece.changes_since(earlier[0])
                if changes is None:
                    found = over(piece.vectors())
                else:
                    added, removed = changes
                    found = earlier[1] + over(added) - over(removed)
                cache.put(piece.state, kind, found)
            total = total + found
    return total


def _without_sums(full: Pass) -> Pass:
    """A pass with sums as `cosine_drift` keeps it (what `pass_over(..., with_sums=False)` gives)."""
    return Pass(full.similarity_sum, full.documents, np.zeros(0, np.int64), np.zeros((0, full.sums.shape[1])))


def _count(source: DocumentSource) -> int:
    known = source.count()
    return known if known is not None else sum(len(batch.vectors) for batch in source.batches(ids=False))


def _checked(blocks: Iterable[np.ndarray], dim: int, collection_ids: list[str]) -> Iterator[np.ndarray]:
    """The blocks as they come; a dimension other than the clustering's is an error."""
    for block in blocks:
        yield _same_dimension(block, dim, collection_ids)


def _same_dimension(block: np.ndarray, dim: int, collection_ids: list[str]) -> np.ndarray:
    if block.shape[1] != dim:
        raise DataError(f"collections {', '.join(collection_ids)} have dimension {block.shape[1]}, "
                        f"the last clustering {dim}")
    return block
