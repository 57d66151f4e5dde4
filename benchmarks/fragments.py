"""A collection filled by many small adds against the same documents bulk-loaded, side by side in one run.

Event triggers mean documents arrive a few at a time, and every add is a Lance fragment:
200,000 x 128 float32 as 2,000 adds of 100 documents, next to one bulk load of the same
documents. For each, best of --repeat in this process:

* the run's assignment: every document read and assigned to 20 centroids (what a
  clustering run does after its fit), its condition passes kept;
* a check in a new process after 10 more adds: the run's passes and the new fragments.

Prints the times, the ratio small adds / bulk, and how many passes each run keeps.

    .venv/bin/python benchmarks/fragments.py [--documents 200000] [--per-add 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from prefect_cluster_triggers.blocks.files.lance_documents import BATCH_ROWS, LanceDocuments, record_batch
from prefect_cluster_triggers.blocks.files.result_files import ResultFiles
from prefect_cluster_triggers.deployments.evaluator.condition_check import PassCache, collection_pass
from prefect_cluster_triggers.flows.engine.assignment import assign_parts
from prefect_cluster_triggers.flows.engine.pipeline import Model


def _best(repeat: int, function) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200_000)
    parser.add_argument("--per-add", type=int, default=100)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.documents, args.dim)).astype(np.float32)
    ids = [str(i) for i in range(args.documents)]
    work = Path(tempfile.mkdtemp(prefix="bench-fragments-"))
    bulk = LanceDocuments(str(work / "db"), "bulk")
    bulk.upsert(record_batch(vectors[s : s + BATCH_ROWS], ids[s : s + BATCH_ROWS]) for s in range(0, args.documents, BATCH_ROWS))
    small = LanceDocuments(str(work / "db"), "small")
    small.upsert([record_batch(vectors[: args.per_add], ids[: args.per_add])])
    import lance

    uri = small.dataset().uri
    for start in range(args.per_add, args.documents, args.per_add):  # appends, as the upserts of new ids write them
        lance.write_dataset(pa.Table.from_batches([record_batch(vectors[start : start + args.per_add],
                                                                ids[start : start + args.per_add])]), uri, mode="append")
    centroids = rng.normal(size=(20, args.dim)).astype(np.float32)
    model = Model(normalize=True, basis=None, fit_centroids=centroids / np.linalg.norm(centroids, axis=1, keepdims=True),
                  centroids=centroids, cluster_ids=np.arange(20), kept=None)

    print(f"{args.documents} x {args.dim} float32, 20 centroids, best of {args.repeat}")
    results = {}
    for name, table in (("bulk", bulk), ("small adds", small)):
        files = ResultFiles(str(work / "results" / name.replace(" ", "-")))
        assign_time, tally = _best(args.repeat, lambda: assign_parts(model, table.snapshot().parts(), lambda *_: None))
        with files.new_run("bench", "run-1") as run:
            run.commit({"run_id": "run-1"}, centroids, tally.passes)
        fragments = len(table.dataset().get_fragments())
        for add in range(10):
            new = rng.normal(size=(args.per_add, args.dim)).astype(np.float32)
            table.upsert([record_batch(new, [f"new-{add}-{i}" for i in range(args.per_add)])])

        def check() -> float:
            latest = files.latest("bench")
            return collection_pass([table], latest.centroids, ["bench"], with_sums=True, cache=PassCache(),
                                   stored=latest).similarity_sum

        check_time, _ = _best(args.repeat, check)
        results[name] = (assign_time, check_time)
        print(f"{name:10s} {fragments:5d} fragments, {len(tally.passes):3d} passes kept   "
              f"assignment {assign_time:6.3f} s   check after 10 adds {check_time:6.3f} s")
    (bulk_assign, bulk_check), (small_assign, small_check) = results["bulk"], results["small adds"]
    print(f"small adds / bulk: assignment {small_assign / bulk_assign:5.2f}x   check {small_check / bulk_check:5.2f}x")


if __name__ == "__main__":
    main()
