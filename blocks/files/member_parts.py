"""Two runs' members in parts that fit in memory, for `flows.engine.changes.compare_parts`.

A change report joins two runs by document id. Up to `PART_ROWS` members a run, both are
read whole (one part). Beyond that, each run's members file is read in batches and spilled
to local temporary Parquet files by a hash of the id, so that an id's rows of both runs meet
in the same part; the parts are then read back one at a time. Memory stays that of one part
and one batch, whatever the runs' size; the spill costs one write and one read of the ids.

The hash is computed over the ids' UTF-8 bytes with numpy (no Python object per id), and is
the same in every process.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.fs as fs
import pyarrow.parquet as pq

PART_ROWS = 2_000_000
"""Members of one run per part: about 200 MB of ids at 25 characters an id."""
_BATCH_ROWS = 65_536
_COLUMNS = ["id", "cluster"]
_PRIME = np.uint64(1099511628211)  # FNV-1's 64-bit prime
_MIX = np.uint64(0xFF51AFD7ED558CCD)  # MurmurHash3's finaliser

Part = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def member_parts(filesystem: fs.FileSystem, previous: str | None, current: str, *,
                 part_rows: int = PART_ROWS) -> Iterator[Part]:
    """(previous ids, previous clusters, current ids, current clusters) per part, from two members
    files (`previous` None: a first run); every id's rows of both files are in one part."""
    files = [path for path in (previous, current) if path is not None]
    rows = max(pq.ParquetFile(path, filesystem=filesystem).metadata.num_rows for path in files)
    if rows <= part_rows:
        yield (*_read(filesystem, previous), *_read(filesystem, current))
        return
    count = math.ceil(rows / part_rows)
    with tempfile.TemporaryDirectory(prefix="cluster-changes-") as spill:
        sides = [_spill(filesystem, path, Path(spill) / side, count)
                 for side, path in (("previous", previous), ("current", current))]
        for bucket in range(count):
            yield (*_read_local(sides[0], bucket), *_read_local(sides[1], bucket))


def hash_buckets(ids: pa.Array, count: int) -> np.ndarray:
    """The part (0 .. count - 1) of each id: a polynomial hash of its UTF-8 bytes, mixed."""
    ids = ids.cast(pa.large_string())
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64)[ids.offset: ids.offset + len(ids) + 1]
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]].astype(np.uint64)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    hashed = lengths.astype(np.uint64)
    if len(data):
        powers = np.cumprod(np.full(int(lengths.max()), _PRIME, dtype=np.uint64))  # wraps modulo 2**64
        data *= powers[np.arange(len(data)) - np.repeat(starts, lengths)]
        filled = lengths > 0
        hashed[filled] += np.add.reduceat(data, starts[filled])
    hashed ^= hashed >> np.uint64(33)
    hashed *= _MIX
    hashed ^= hashed >> np.uint64(33)
    return (hashed % np.uint64(count)).astype(np.int64)


def _spill(filesystem: fs.FileSystem, path: str | None, folder: Path, count: int) -> list[Path | None]:
    """The members file in `count` local files by the ids' hash; None for a part with no row."""
    if path is None:
        return [None] * count
    folder.mkdir()
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for batch in pq.ParquetFile(path, filesystem=filesystem).iter_batches(_BATCH_ROWS, columns=_COLUMNS):
            buckets = hash_buckets(batch.column(0), count)
            order = np.argsort(buckets, kind="stable")
            ordered = batch.take(pa.array(order))
            bounds = np.searchsorted(buckets[order], np.arange(count + 1))
            for bucket in np.flatnonzero(np.diff(bounds)):
                if bucket not in writers:
                    writers[bucket] = pq.ParquetWriter(folder / f"{bucket}.parquet", batch.schema)
                writers[bucket].write_batch(ordered.slice(bounds[bucket], bounds[bucket + 1] - bounds[bucket]))
    finally:
        for writer in writers.values():
            writer.close()
    return [folder / f"{bucket}.parquet" if bucket in writers else None for bucket in range(count)]


def _read(filesystem: fs.FileSystem, path: str | None) -> tuple[np.ndarray, np.ndarray]:
    if path is None:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return _arrays(pq.read_table(path, filesystem=filesystem, columns=_COLUMNS))


def _read_local(paths: list[Path | None], bucket: int) -> tuple[np.ndarray, np.ndarray]:
    path = paths[bucket]
    return _read(fs.LocalFileSystem(), None if path is None else str(path))


def _arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    ids = table.column("id").to_numpy(zero_copy_only=False)
    return ids, table.column("cluster").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
