"""Input files with the problems a hostile user brought to `collections add` (issue 21), and
the start of the one line each must be refused with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_bad_input(tmp_path: Path, kind: str) -> Path:
    """`kind` (a key of BAD_INPUTS) written as tmp_path/x.<extension>; its path."""
    if kind == "0-byte npy":
        (tmp_path / "x.npy").write_bytes(b"")
    elif kind == "0-row npy":
        np.save(tmp_path / "x.npy", np.ones((0, 4), np.float32))
    elif kind == "complex npy":
        np.save(tmp_path / "x.npy", np.ones((2, 4)) + 1j)
    elif kind == "string vectors":
        pq.write_table(pa.table({"id": ["a"], "vector": [["1", "2"]]}), tmp_path / "x.parquet")
    elif kind == "string vector column":
        pq.write_table(pa.table({"id": ["a"], "vector": ["1,2"]}), tmp_path / "x.parquet")
    elif kind == "null parquet id":
        pq.write_table(pa.table({"id": ["a", None], "vector": [[1, 2], [3, 4]]}), tmp_path / "x.parquet")
    elif kind == "0-row parquet":
        pq.write_table(pa.table({"id": pa.array([], pa.string()), "vector": pa.array([], pa.list_(pa.float32()))}),
                       tmp_path / "x.parquet")
    elif kind == "null jsonl id":
        (tmp_path / "x.jsonl").write_text('{"id": "a", "vector": [1, 2]}\n{"id": null, "vector": [1, 2]}\n')
    elif kind == "0-byte jsonl":
        (tmp_path / "x.jsonl").write_text("")
    return next(tmp_path.glob("x.*"))


BAD_INPUTS = {
    "0-byte npy": "x.npy: cannot read a .npy matrix",
    "0-row npy": "x.npy: no documents",
    "complex npy": "x.npy: expected a 2-d C-ordered matrix of integers or floats, got shape .2, 4. of complex128",
    "string vectors": "x.parquet: column 'vector' must hold lists of integers or floats, got list<element: string>",
    "string vector column": "x.parquet: column 'vector' must hold lists of integers or floats, got string",
    "null parquet id": "x.parquet: row 2: id is null",
    "0-row parquet": "x.parquet: no documents",
    "null jsonl id": "x.jsonl:2: 'id' must be a string or an integer, got None",
    "0-byte jsonl": "x.jsonl: no documents",
}
