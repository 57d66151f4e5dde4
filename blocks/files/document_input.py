"""Files a data team brings to `collections add`, read as a stream of record batches.

* `.npy`: a 2-d matrix of integers or floats, read in plain sequential reads; ids from a
  text file (one per line) or `<prefix>-<row>` with a prefix drawn for this add
  (`lance_documents.id_prefix`); payloads from a JSON Lines file;
* `.parquet`: columns `id` (strings or integers) and `vector` (a list of numbers), every
  other column goes into the payload; read row group by row group;
* `.jsonl`: one `{"id": ..., "vector": [...], "payload": {...}}` object per line.

Each batch is at most `WRITE_ROWS` documents, so memory stays bounded whatever the file's
size. A problem names the file, the line or row, and what was expected; a file without
documents is one.
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

from prefect_cluster_triggers.blocks.files.lance_documents import WRITE_ROWS, id_prefix, record_batch
from prefect_cluster_triggers.core.errors import DataError

FORMATS = (".npy", ".parquet", ".jsonl")


@dataclass(frozen=True)
class DocumentInput:
    """An input file opened for streaming: how many documents it holds (when known), its
    batches, and the prefix of the ids given to its documents (None: the files carry ids)."""

    rows: int | None
    batches: Iterator[pa.RecordBatch]
    id_prefix: str | None = None


def open_input(path: str, *, ids: str | None = None, payloads: str | None = None,
               batch_rows: int = WRITE_ROWS) -> DocumentInput:
    """Open `path` by its extension.

    Raises:
        DataError: an unknown extension, an unreadable or empty file, vectors that are not
            real numbers, or `--ids` / `--payloads` with a format that carries its own.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unknown format {suffix or '(no extension)'!r}; allowed: {', '.join(FORMATS)}")
    if suffix != ".npy" and (ids or payloads):
        raise DataError(f"{path}: --ids and --payloads go with .npy only; {suffix} files carry their own")
    if suffix == ".npy":
        return _npy(path, ids, payloads, batch_rows)
    if suffix == ".parquet":
        return _parquet(path, batch_rows)
    return DocumentInput(None, _jsonl(path, batch_rows))


def _npy(path: str, ids: str | None, payloads: str | None, batch_rows: int) -> DocumentInput:
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only: no page is read
    except (OSError, ValueError, EOFError) as exc:  # EOFError: a 0-byte file
        raise DataError(f"{path}: cannot read a .npy matrix: {exc or 'empty file'}") from None
    # Integers or floats only: a cast of complex numbers would drop their imaginary part.
    if header.ndim != 2 or header.dtype.kind not in "iuf" or not header.flags.c_contiguous:
        raise DataError(f"{path}: expected a 2-d C-ordered matrix of integers or floats, got shape {header.shape} "
                        f"of {header.dtype}")
    (rows, dim), dtype, offset = header.shape, header.dtype, header.offset
    del header
    if rows == 0 or dim == 0:
        raise DataError(f"{path}: no documents (shape {(rows, dim)})")
    prefix = None if ids else id_prefix()

    def batches() -> Iterator[pa.RecordBatch]:
        # Plain reads, not the memory map: mapped pages would count towards this process's
        # memory until the whole file had passed through it.
        with open(path, "rb") as data, _lines(ids) as id_lines, _lines(payloads) as payload_lines:
            data.seek(offset)
            for start in range(0, rows, batch_rows):
                stop = min(start + batch_rows, rows)
                block = np.fromfile(data, dtype=dtype, count=(stop - start) * dim).reshape(stop - start, dim)
                batch_ids = (_take(id_lines, stop - start, ids, "ids", start) if id_lines
                             else [f"{prefix}-{i}" for i in range(start, stop)])
                texts = ([_json_text(line, payloads, start + n + 1) for n, line in
                          enumerate(_take(payload_lines, stop - start, payloads, "payloads", start))]
                         if payload_lines else None)
                yield record_batch(block.astype(np.float32, copy=False), batch_ids, texts)
            for name, lines in (("ids", id_lines), ("payloads", payload_lines)):
                if lines and next(lines, "").strip():
                    raise DataError(f"{ids if name == 'ids' else payloads}: more {name} than the {rows} vectors")

    return DocumentInput(rows, batches(), prefix)


def _parquet(path: str, batch_rows: int) -> DocumentInput:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: cannot read Parquet: {exc}") from None
    columns = parquet.schema_arrow
    if "id" not in columns.names or "vector" not in columns.names:
        raise DataError(f"{path}: needs columns 'id' and 'vector' (found {', '.join(columns.names)})")
    id_type, vector_type = columns.field("id").type, columns.field("vector").type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type) or pa.types.is_integer(id_type)):
        raise DataError(f"{path}: column 'id' must hold strings or integers, got {id_type}")
    if not (_is_list(vector_type) and (pa.types.is_integer(vector_type.value_type)
                                       or pa.types.is_floating(vector_type.value_type))):
        raise DataError(f"{path}: column 'vector' must hold lists of integers or floats, got {vector_type}")
    if parquet.metadata.num_rows == 0:
        raise DataError(f"{path}: no documents")
    names = columns.names
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
            ids = batch.column("id")
            if ids.null_count:
                null = start + 1 + pc.index(pc.is_null(ids), True).as_py()
                raise DataError(f"{path}: row {null}: id is null")
            ids = [str(i) for i in ids.to_pylist()]
            yield record_batch(matrix.reshape(len(batch), -1), ids, payloads)
            start += len(batch)

    return DocumentInput(parquet.metadata.num_rows, batches())


def _jsonl(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with _lines(path) as lines:
        number = documents = 0
        while True:
            chunk = list(itertools.islice(lines, batch_rows))
            if not chunk:
                if not documents:
                    raise DataError(f"{path}: no documents")
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
                if isinstance(document["id"], bool) or not isinstance(document["id"], (str, int)):
                    raise DataError(f"{path}:{number}: 'id' must be a string or an integer, got {document['id']!r}")
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
                documents += len(rows)
                yield record_batch(matrix, ids, payloads)


def _is_list(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type)


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
