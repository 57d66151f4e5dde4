"""cosine_drift of a collection on disk vs the bare in-memory computation, side by side in one run.

1M x 128 float32 in a LanceDB table on disk (as a LanceCollection stores it, bulk-loaded
in fragments) against 20 centroids. Timings, each the best of --repeat runs, in this process:

* floor: one full read of the same array as a memory-mapped file (`np.sum`), page cache;
* bare: the array already in memory, `C @ X.T` and the max over centroids;
* full pass: `flows.condition_check.collection_pass` with nothing stored or cached, reading
  every fragment: what a check of a source that cannot tell what changed (HTTP, PostgreSQL)
  costs, or of a Lance collection every fragment of which was rewritten since the clustering;
* first check after a clustering, in a new process: the run's stored passes (read from its
  results, as `measure` does) and nothing else read;
* the same after 10 documents updated and 5 deleted, across the collection: the new rows
  and the deleted ones (found by row address, read from the run's version) alone are read;
* the same after --added new documents: those alone are read;
* next check: after --added more, in the same process (its own passes kept).

The checks give the exact full-pass value (checked here). Prints each time and the ratios to
bare (target <= 1.5) and to the floor; then a `silhouette_drop` check (SILHOUETTE_SAMPLE
rows taken by row number, then scored) against scoring the same number of rows already in
memory; a run's fit sample (131,072 rows by number, the table having had updates and
deletes) taken fragment by fragment against Lance's `dataset.take` of the same rows; then
what storing the passes adds to the clustering run's assignment (the same batches assigned
with and without).

    .venv/bin/python benchmarks/drift.py [--documents 1000000] [--dim 128] [--added 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from prefect_cluster_triggers.blocks.files.lance_documents import BATCH_ROWS, LanceDocuments, record_batch
from prefect_cluster_triggers.blocks.files.result_files import ResultFiles
from prefect_cluster_triggers.deployments.evaluator.condition_check import PassCache, collection_pass
from prefect_cluster_triggers.flows.engine.assignment import assign_parts
from prefect_cluster_triggers.flows.engine.conditions import Baseline, cosine_drift, cosine_drift_of, silhouette_drop
from prefect_cluster_triggers.flows.engine.metrics import SILHOUETTE_SAMPLE
from prefect_cluster_triggers.flows.engine.pipeline import STREAM_FIT_ROWS, Model, assign
from prefect_cluster_triggers.flows.engine.preprocess import sample_of, sample_rows


def _best(repeat: int, function, before=lambda: None) -> float:
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--added", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(20, args.dim)).astype(np.float32)
    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    path = work / "vectors.f32"
    rows = 100_000
    with open(path, "wb") as handle:
        for _ in range(0, args.documents, rows):
            handle.write(rng.normal(size=(rows, args.dim)).astype(np.float32).tobytes())
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=(args.documents, args.dim))
    in_memory = np.array(mapped)
    table = LanceDocuments(str(work / "db"), "bench")
    table.upsert(record_batch(in_memory[start : start + BATCH_ROWS], [str(i) for i in range(start, min(start + BATCH_ROWS, args.documents))])
                 for start in range(0, args.documents, BATCH_ROWS))

    # The clustering run: every document assigned to these centroids, its passes stored with its results.
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    model = Model(normalize=True, basis=None, fit_centroids=unit, centroids=centroids,
                  cluster_ids=np.arange(len(centroids)), kept=None)
    files = ResultFiles(str(work / "results"))
    with files.new_run("bench", "run-1") as run:
        tally = assign_parts(model, table.snapshot().parts(), run.write_members)
        run.commit({"run_id": "run-1"}, centroids, tally.passes)
    baseline = Baseline(centroids, tally.similarity_sum / tally.documents, tally.documents, None)
    warm = PassCache()

    def check(cache: PassCache, *, stored: bool = True) -> float:
        latest = files.latest("bench")  # what a check reads of the results: record, centroids (passes once)
        return cosine_drift_of(collection_pass([table], latest.centroids, ["bench"], with_sums=False, cache=cache,
                                               stored=latest if stored else None), baseline)

    def add() -> None:
        start = table.count()
        new = rng.normal(size=(args.added, args.dim)).astype(np.float32)
        table.upsert([record_batch(new, [str(i) for i in range(start, start + args.added)])])

    floor = _best(args.repeat, lambda: np.sum(mapped))
    bare = _best(args.repeat, lambda: np.max(centroids @ in_memory.T, axis=0).mean())
    full = _best(args.repeat, lambda: check(PassCache(), stored=False))
    after_run = _best(args.repeat, lambda: check(PassCache()))
    added_once = False

    def add_once() -> None:
        nonlocal added_once
        if not added_once:
            add()
            added_once = True

    changed_once = False

    def change_once() -> None:  # 10 updated and 5 deleted, spread over every fragment
        nonlocal changed_once
        if not changed_once:
            picked = rng.choice(args.documents, size=15, replace=False)
            table.upsert([record_batch(rng.normal(size=(10, args.dim)).astype(np.float32), [str(i) for i in picked[:10]])])
            table.delete([str(i) for i in picked[10:]])
            changed_once = True

    after_changed = _best(args.repeat, lambda: check(PassCache()), before=change_once)
    after_added = _best(args.repeat, lambda: check(PassCache()), before=add_once)
    check(warm)
    following = _best(args.repeat, lambda: check(warm), before=add)
    everything = np.concatenate([b.vectors for b in table.batches(ids=False)])
    assert abs(check(warm) - cosine_drift(everything, baseline)) < 1e-9, "the check must equal a full pass"
    assert abs(check(PassCache()) - cosine_drift(everything, baseline)) < 1e-9, "the check must equal a full pass"

    silhouette_baseline = Baseline(centroids, 0.5, args.documents, 0.1)
    scored = _best(args.repeat, lambda: silhouette_drop(in_memory[:SILHOUETTE_SAMPLE], silhouette_baseline))
    sampled = _best(args.repeat, lambda: silhouette_drop(sample_of([table.snapshot()], SILHOUETTE_SAMPLE)[1],
                                                         silhouette_baseline))

    snapshot = table.snapshot()
    fit_rows = sample_rows(snapshot.count, STREAM_FIT_ROWS)
    ours = _best(1, lambda: snapshot.sample(STREAM_FIT_ROWS))
    lances = _best(1, lambda: table.dataset(snapshot.version).take(fit_rows, columns=["id", "vector", "payload"]))

    part = table.snapshot().parts()[0]
    batches = list(part.batches())
    with_passes = _best(args.repeat, lambda: [assign(model, b.ids, b.vectors, b.piece) for b in batches])
    without = _best(args.repeat, lambda: [assign(model, b.ids, b.vectors) for b in batches])

    def line(label: str, seconds: float) -> str:
        return f"{label:58s} {seconds:7.3f} s   /bare {seconds / bare:5.2f}   /floor {seconds / floor:5.2f}"

    print(f"{args.documents} x {args.dim} float32 on disk, 20 centroids, best of {args.repeat}")
    print(f"{'floor (np.sum of the map)':58s} {floor:7.3f} s")
    print(f"{'bare  (C @ X.T, max)':58s} {bare:7.3f} s")
    print(line("full pass (nothing stored or cached: every fragment read)", full))
    print(line("first check after a clustering, new process", after_run))
    print(line("... and 10 documents updated, 5 deleted, new process", after_changed))
    print(line(f"... and +{args.added} new documents, new process", after_added))
    print(line(f"next check (+{args.added} more), same process", following))
    print(f"silhouette_drop check: {sampled:.3f} s; scoring {SILHOUETTE_SAMPLE} rows in memory {scored:.3f} s "
          f"({sampled / scored:.2f}x)")
    print(f"fit sample of {STREAM_FIT_ROWS} rows after updates: by fragment {ours:.3f} s, "
          f"Lance's dataset.take {lances:.3f} s ({ours / lances:.3f}x)")
    print(f"the run's assignment of {sum(len(b.ids) for b in batches)} documents: storing passes {with_passes:.3f} s, "
          f"without {without:.3f} s ({with_passes / without:.2f}x)")
    path.unlink()


if __name__ == "__main__":
    main()
