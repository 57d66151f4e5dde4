"""Collection I/O against the machine's own floor, side by side in one run, each side a fresh process.

Writes a float32 `.npy` of --rows x --dim (1M x 768 = 2.9 GB by default) and measures:

* write: `cp` of the `.npy` (the disk's speed for these bytes) against
  `cluster-triggers collections add` of the same file into a new collection (a LanceDB
  table, streamed in batches), against a Prefect server this script starts;
* read: `np.load` of the `.npy` (one float32 matrix in memory) against reading the whole
  collection's table back batch by batch (the storage layer alone, without Prefect's
  import and block load), as the flow and the condition checks do;
* the alternative we did not choose, on the same batches: a Parquet dataset written and
  scanned with pyarrow (no upsert, no delete, no multi-file commit: only the speed is
  comparable).

Prints wall time and peak RSS of each process, and the ratios (targets: add <= 3x cp in
time, add below 1 GB peak RSS whatever the input size).

    .venv/bin/python benchmarks/collection_io.py [--rows 1000000] [--dim 768]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_BIN = Path(sys.executable).parent
_READ = """
import sys
from prefect_cluster_triggers.blocks.files.lance_documents import LanceDocuments
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name
print(sum(len(b.ids) for b in LanceDocuments(sys.argv[1], owned_name(namespace_id_of(None), "bench")).batches()))
"""
_LOAD = "import sys, numpy as np; print(np.load(sys.argv[1]).shape[0])"
_PARQUET_WRITE = """
import sys, pyarrow as pa, pyarrow.dataset as ds
from prefect_cluster_triggers.blocks.files.document_input import open_input
source = open_input(sys.argv[1])
first = next(source.batches)
import itertools
ds.write_dataset(pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], source.batches)), sys.argv[2],
                 format="parquet", max_rows_per_file=131072, max_rows_per_group=16384)
"""
_PARQUET_READ = """
import sys, pyarrow.dataset as ds
rows = 0
for batch in ds.dataset(sys.argv[1], format="parquet").to_batches(columns=["id", "vector"], batch_size=65536):
    batch.column("vector").values.to_numpy(zero_copy_only=False)
    rows += batch.num_rows
print(rows)
"""


_LAUNCH = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
process = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps([time.perf_counter() - started, peak, process.returncode, process.stdout.strip(), process.stderr[-2000:]]))
"""


def _measure(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one fresh process.

    A small launcher process starts it, so the peak RSS is the command's own, not that of
    this (larger) process it would otherwise be forked from.
    """
    launched = subprocess.run([sys.executable, "-S", "-c", _LAUNCH, *command], env=env, capture_output=True, text=True,
                              check=True)
    elapsed, peak, code, out, err = json.loads(launched.stdout)
    if code != 0:
        raise SystemExit(f"{command[0]} failed: {err}")
    return elapsed, peak, out


def _write_npy(path: Path, rows: int, dim: int) -> None:
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):
        stop = min(start + 100_000, rows)
        matrix[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    matrix.flush()
    del matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()

    from prefect_cluster_triggers.deployments.stack.processes import free_port, prefect_server

    work = Path(tempfile.mkdtemp(prefix="bench-io-", dir=os.environ.get("BENCH_DIR")))
    try:  # the run leaves nothing behind: its files are about 9 GB at the default size
        source = work / "vectors.npy"
        _write_npy(source, args.rows, args.dim)
        size_gb = source.stat().st_size / 1e9
        env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "CLUSTER_TRIGGERS_DATA_DIR": str(work / "data"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        with prefect_server(free_port(), env, log=work / "server.log") as api_url:
            env["PREFECT_API_URL"] = api_url
            subprocess.run(["sync"], check=True)
            cp = _measure(["cp", str(source), str(work / "copy.npy")], env)
            (work / "copy.npy").unlink()
            add = _measure([str(_BIN / "cluster-triggers"), "collections", "add", "bench", "--vectors", str(source)], env)
            read = _measure([sys.executable, "-c", _READ, str(work / "data" / "collections")], env)
            load = _measure([sys.executable, "-c", _LOAD, str(source)], env)
            parquet_write = _measure([sys.executable, "-c", _PARQUET_WRITE, str(source), str(work / "parquet")], env)
            parquet_read = _measure([sys.executable, "-c", _PARQUET_READ, str(work / "parquet")], env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.rows} x {args.dim} float32 ({size_gb:.1f} GB), each side a fresh process")
    print(f"write  cp                   {cp[0]:7.2f} s  {cp[1]:7.0f} MB peak")
    print(f"       collections add      {add[0]:7.2f} s  {add[1]:7.0f} MB peak   add/cp {add[0] / cp[0]:5.2f}x time")
    print(f"read   np.load of the .npy  {load[0]:7.2f} s  {load[1]:7.0f} MB peak")
    print(f"       batches of the table {read[0]:7.2f} s  {read[1]:7.0f} MB peak   "
          f"batches/np.load {read[0] / load[0]:5.2f}x time, {read[1] / load[1]:5.2f}x memory")
    print("not chosen: Parquet dataset (pyarrow), same batches")
    print(f"       write                {parquet_write[0]:7.2f} s  {parquet_write[1]:7.0f} MB peak   "
          f"add/parquet {add[0] / parquet_write[0]:5.2f}x time")
    print(f"       scan                 {parquet_read[0]:7.2f} s  {parquet_read[1]:7.0f} MB peak   "
          f"lance/parquet {read[0] / parquet_read[0]:5.2f}x time")
    assert read[2] == parquet_read[2] == str(args.rows), (read[2], parquet_read[2])


if __name__ == "__main__":
    main()
