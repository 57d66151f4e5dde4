"""Files a data team brings to `collections add`, read as a stream of record batches.

* `.npy`: a 2-d numeric matrix, read in plain sequential reads; ids from a text file (one per line) or the
  row numbers after the collection's current count; payloads from a JSON Lines file;
* `.parquet`: columns `id` and `vector` (a list of numbers), every other column goes into
  the payload; read row group by row group;
* `.jsonl`: one `{"id": ..., "vector": [...], "payload": {...}}` object per line.

Each batch is at most `WRITE_ROWS` documents, so memory stays bounded whatever the file's
size. A problem names the file, the line or row, and what was expected.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prefect_cluster_triggers.blocks._lance_documents import WRITE_ROWS, record_batch
from prefect_cluster_triggers.flows.errors import DataError

FORMATS = (".npy", ".parquet", ".jsonl")


@dataclass(frozen=True)
class DocumentInput:
    """An input file opened for streaming: how many documents it holds (when known) and its batches."""

    rows: int | None
    batches: Iterator[pa.RecordBatch]


def open_input(path: str, *, ids: str | None = None, payloads: str | None = None, first_id: int = 0,
               batch_rows: int = WRITE_ROWS) -> DocumentInput:
    """Open `path` by its extension.

    Raises:
        DataError: an unknown extension, an unreadable file, or `--ids` / `--payloads` with a
            format that carries its own.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unknown format {suffix or '(no extension)'!r}; allowed: {', '.join(FORMATS)}")
    if suffix != ".npy" and (ids or payloads):
        raise DataError(f"{path}: --ids and --payloads go with .npy only; {suffix} files carry their own")
    if suffix == ".npy":
        return _npy(path, ids, payloads, first_id, batch_rows)
    if suffix == ".parquet":
        return _parquet(path, batch_rows)
    return DocumentInput(None, _jsonl(path, batch_rows))


def _npy(path: str, ids: str | None, payloads: str | None, first_id: int, batch_rows: int) -> DocumentInput:
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only: no page is read
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read a .npy matrix: {exc}") from None
    if header.ndim != 2 or not np.issubdtype(header.dtype, np.number) or not header.flags.c_contiguous:
        raise DataError(f"{path}: expected a 2-d numeric C-ordered matrix, got shape {header.shape} of {header.dtype}")
    (rows, dim), dtype, offset = header.shape, header.dtype, header.offset
    del header

    def batches() -> Iterator[pa.RecordBatch]:
        # Plain reads, not the memory map: mapped pages would count towards this process's
        # memory until the whole file had passed through it.
        with open(path, "rb") as data, _lines(ids) as id_lines, _lines(payloads) as payload_lines:
            data.seek(offset)
            for start in range(0, rows, batch_rows):
                stop = min(start + batch_rows, rows)
                block = np.fromfile(data, dtype=dtype, count=(stop - start) * dim).reshape(stop - start, dim)
                batch_ids = (_take(id_lines, stop - start, ids, "ids", start) if id_lines
                             else [str(first_id + i) for i in range(start, stop)])
                texts = ([_json_text(line, payloads, start + n + 1) for n, line in
                          enumerate(_take(payload_lines, stop - start, payloads, "payloads", start))]
                         if payload_lines else None)
                yield record_batch(block.astype(np.float32, copy=False), batch_ids, texts)
            for name, lines in (("ids", id_lines), ("payloads", payload_lines)):
                if lines and next(lines, "").strip():
                    raise DataError(f"{ids if name == 'ids' else payloads}: more {name} than the {rows} vectors")

    return DocumentInput(rows, batches())


def _parquet(path: str, batch_rows: int) -> DocumentInput:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read Parquet: {exc}") from None
    names = parquet.schema_arrow.names
    if "id" not in names or "vector" not in names:
        raise DataError(f"{path}: needs columns 'id' and 'vector' (found {', '.join(names)})")
    extra = [n for n in names if n not in ("id", "vector")]

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        for batch in parquet.iter_batches(batch_size=batch_rows):
            vectors = batch.column("vector")
            lengths = pc.list_value_length(vectors).to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths.min() != lengths.max() or vectors.null_count):
                raise DataError(f"{path}: rows {start + 1}-{start + len(lengths)}: vectors of different lengths "
                                f"{sorted(set(lengths.tolist()))[:5]} or empty")
            matrix = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            payloads = ([json.dumps(row, default=str) for row in batch.select(extra).to_pylist()] if extra else None)
            ids = [str(i) for i in batch.column("id").to_pylist()]
            yield record_batch(matrix.reshape(len(batch), -1), ids, payloads)
            start += len(batch)

    return DocumentInput(parquet.metadata.num_rows, batches())


def _jsonl(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with _lines(path) as lines:
        number = 0
        while True:
            chunk = list(itertools.islice(lines, batch_rows))
            if not chunk:
                return
            ids: list[str] = []
            payloads: list[str | None] = []
            rows: list[Any] = []
            for line in chunk:
                number += 1
                if not line.strip():
                    continue
                document = _json_value(line, path, number)
                if not isinstance(document, dict) or "id" not in document or not isinstance(document.get("vector"), list):
                    raise DataError(f"{path}:{number}: expected an object with 'id' and a 'vector' list")
                ids.append(str(document["id"]))
                payload = document.get("payload")
                payloads.append(None if payload is None else json.dumps(payload, separators=(",", ":")))
                rows.append(document["vector"])
            try:
                matrix = np.asarray(rows, dtype=np.float32)
            except (ValueError, TypeError):
                raise DataError(f"{path}: lines {number - len(chunk) + 1}-{number}: vectors are not lists of "
                                "numbers of one length") from None
            if rows:
                yield record_batch(matrix, ids, payloads)


class _lines:
    """A text file's lines, lazily (or nothing when no path is given)."""

    def __init__(self, path: str | None) -> None:
        self.path, self.handle = path, None

    def __enter__(self) -> Iterator[str] | None:
        if self.path is None:
            return None
        try:
            self.handle = open(self.path, encoding="utf-8")
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read: {exc.strerror}") from None
        return (line.rstrip("\n") for line in self.handle)

    def __exit__(self, *exc: object) -> None:
        if self.handle:
            self.handle.close()


def _take(lines: Iterator[str], count: int, path: str | None, name: str, start: int) -> list[str]:
    taken = list(itertools.islice(lines, count))
    if len(taken) < count:
        raise DataError(f"{path}: {start + len(taken)} {name} for more vectors; one line per vector")
    return taken


def _json_value(line: str, path: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{number}: not JSON: {exc.msg}") from None


def _json_text(line: str, path: str | None, number: int) -> str | None:
    value = _json_value(line, path or "payloads", number)
    return None if value is None else json.dumps(value, separators=(",", ":"))
