"""A collection's documents as a LanceDB table: local directory or object storage, one format.

    id       string, unique: the upsert key
    vector   fixed_size_list<float32>[dim]
    payload  string (the JSON payload as text), nullable

Why Lance rather than our own files or plain Parquet: it is an embedded, Arrow-native table
format made for vectors, with atomic versioned commits, upsert (`merge_insert` on `id`) and
delete, concurrent writers (a commit that conflicts is retried against the new version), the
same code on a local path or an `s3://` URI, and streamed scans in record batches. Parquet
datasets have none of upsert, delete or atomic multi-file commits: we would be writing a
table format again. Tables are kept where LanceDB keeps them (`<uri>/<table>.lance`) and
opened with Lance's own Python package: LanceDB's database layer adds nothing we use and
takes seconds to import in every process that opens a collection.

Every add is one commit, all or nothing, whatever the collection holds: into an empty
collection one streamed append (the bulk load), into one with documents one streamed
`merge_insert` on `id`. The batches are checked as Lance reads them (dimension, NaN or inf,
empty or null ids) and the whole add's ids for repeats after the last one, so a problem
anywhere, or a writer killed mid-add, leaves the table at its version, rows unchanged.
Nothing here imports Prefect.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prefect_cluster_triggers.blocks.files.fragment_pieces import PieceState, pieces_of, removed_since
from prefect_cluster_triggers.core.errors import DataError
from prefect_cluster_triggers.flows.engine.preprocess import sample_rows

BATCH_ROWS = 16_384
"""Rows per read batch: big enough for numpy's speed, small enough for memory (48 MB at 768 dimensions)."""
_READ_AHEAD = 2  # batches Lance decodes ahead of the reader (its default, 16, held 1.9 GB at 768 dimensions)
_IO_BUFFER = 256 << 20  # bytes of reads in flight (Lance's default is 2 GiB)
WRITE_ROWS = 16_384
"""Rows per batch streamed to a write: 48 MB at 768 dimensions."""
PART_ROWS = 262_144
"""Rows per part of a run's assignment: one Dask task each (800 MB read at 768 dimensions)."""
FILE_FORMAT = "2.0"
"""Lance file format of a new table: Lance's default ("stable", 2.1) writes and scans float vectors
several times slower than 2.0, for files of the same size. A table keeps the format it was made with."""
_ROWS_PER_FILE = 131_072
"""Rows per data file of a bulk load: bounds the writer's memory (about 400 MB at 768 dimensions)."""


@dataclass(frozen=True)
class WriteCounts:
    """What one add changed, counted by its commit itself (exact under concurrent writers)."""

    inserted: int = 0
    updated: int = 0


@dataclass(frozen=True)
class DocumentBatch:
    """One streamed batch: ids, a float32 matrix (documents x dim) and the payloads' JSON texts.

    `piece` is the state of the stored piece every row of the batch comes from (Lance
    fragments, see `fragment_pieces`), so a run can leave per-piece condition passes that
    later checks reuse; None for sources that cannot tell.
    """

    ids: list[str]
    vectors: np.ndarray
    payloads: list[str | None]
    piece: PieceState | None = None


def id_prefix() -> str:
    """32 random hex digits (128 bits, a UUID's worth), drawn once per add: default ids `<prefix>-<row>` never
    meet the ids of earlier adds, whatever was deleted in between (row numbers after the
    count did: the next add replaced documents)."""
    return secrets.token_hex(16)


def schema(dim: int) -> pa.Schema:
    return pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim)), ("payload", pa.string())])


def record_batch(vectors: np.ndarray, ids: list[str | None], payloads: list[str | None] | None = None) -> pa.RecordBatch:
    """Documents as a batch of the table's schema (vectors are not copied when already float32 C-ordered)."""
    if vectors.dtype.kind not in "iuf":  # a cast of complex numbers would drop their imaginary part
        raise DataError(f"vectors must be real numbers (integers or floats), got {vectors.dtype}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise DataError(f"vectors must be a non-empty 2-d array (documents x dimensions), got shape {vectors.shape}")
    flat = pa.array(vectors.reshape(-1))
    return pa.RecordBatch.from_arrays(
        [pa.array(ids, pa.string()), pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
         pa.array(payloads if payloads is not None else [None] * len(ids), pa.string())],
        schema=schema(vectors.shape[1]),
    )


class LanceDocuments:
    """One collection's table; safe for many readers and concurrent writers, in any process."""

    def __init__(self, uri: str, table: str, storage_options: dict[str, str] | None = None) -> None:
        self.uri, self.table_name, self.storage_options = uri, table, storage_options or {}

    @property
    def path(self) -> str:
        """The table's Lance dataset: `<uri>/<table>.lance`, where LanceDB keeps a table of that name."""
        return f"{self.uri.rstrip('/')}/{self.table_name}.lance"

    def count(self) -> int:
        dataset = self.dataset()
        return dataset.count_rows() if dataset is not None else 0

    def dimension(self) -> int | None:
        dataset = self.dataset()
        return dataset.schema.field("vector").type.list_size if dataset is not None else None

    def upsert(self, batches: Iterable[pa.RecordBatch]) -> WriteCounts:
        """Insert new ids and replace existing ones in one commit: a bulk append into an empty
        table, else one merge on `id`; the batches stream through, memory stays bounded.

        Raises:
            DataError: a dimension change, NaN or inf, an empty, null or repeated id, or a
                problem raised by `batches` itself; nothing is committed then.
        """
        import lance

        found = self.dataset()
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return WriteCounts()
        empty = found is None or found.count_rows() == 0
        dim = (first if empty else found).schema.field("vector").type.list_size
        dataset = found or self._create(dim)
        checked = _Checked(itertools.chain([first], batches), dim)
        reader = pa.RecordBatchReader.from_batches(schema(dim), iter(checked))
        try:
            if empty:
                # Straight to Lance: LanceDB's own `add` buffers up to a million rows (3 GB at 768 dimensions).
                lance.write_dataset(reader, dataset, mode="append", max_rows_per_file=_ROWS_PER_FILE)
                return WriteCounts(inserted=checked.rows)
            # A stream, not a table: Lance reads it once (keeping a copy on disk for its
            # conflict retries) and commits only after the last batch.
            result = (dataset.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
                      .execute(reader))
        except Exception:
            if found is None:  # the table this add made: a refused first add leaves no collection behind
                self._drop_if_empty()
            if checked.problem is not None:
                raise checked.problem from None
            raise
        return WriteCounts(result["num_inserted_rows"], result["num_updated_rows"])

    def delete(self, ids: list[str]) -> int:
        """Delete documents by id in one commit; the number actually deleted (unknown ids are ignored)."""
        dataset = self.dataset()
        if dataset is None or not ids:
            return 0
        deleted = 0
        for start in range(0, len(ids), 10_000):  # keeps the SQL filter a reasonable size
            quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids[start : start + 10_000])
            deleted += dataset.delete(f"id IN ({quoted})")["num_deleted_rows"]
        return deleted

    def batches(self, *, ids: bool = True, with_payloads: bool = False, batch_rows: int = BATCH_ROWS,
                version: int | None = None) -> Iterator[DocumentBatch]:
        """The documents of one table version (the latest, or `version`), streamed: memory is
        bounded, whatever the table's size.

        `ids=False` scans the vectors alone (condition checks): decoding a million ids into
        Python strings costs more than the arithmetic on their vectors.
        """
        dataset = self.dataset(version)
        if dataset is None:
            return
        for batch in dataset.to_batches(columns=_columns(ids, with_payloads), batch_size=batch_rows, scan_in_order=True,
                                        batch_readahead=_READ_AHEAD, io_buffer_size=_IO_BUFFER):
            if batch.num_rows:
                yield _document_batch(batch, ids=ids, with_payloads=with_payloads)

    def snapshot(self) -> LanceSnapshot:
        """The table as it is now, pinned: a run samples and assigns the same documents even while others write."""
        dataset = self.dataset(None)
        if dataset is None:
            return LanceSnapshot(self, None, 0, None)
        return LanceSnapshot(self, dataset.version, dataset.count_rows(), dataset.schema.field("vector").type.list_size)

    def dataset(self, version: int | None = None) -> Any:
        """The Lance dataset of the table at `version` (the newest when None); None before the first add."""
        import lance

        try:
            dataset = lance.dataset(self.path, storage_options=self.storage_options)
        except ValueError:  # "Dataset at path ... was not found"
            return None
        return dataset if version is None else dataset.checkout_version(version)

    def _drop_if_empty(self) -> None:
        import lance

        dataset = self.dataset()
        if dataset is not None and dataset.count_rows() == 0:  # not if a concurrent first add committed meanwhile
            lance.LanceDataset.drop(self.path, storage_options=self.storage_options, ignore_not_found=True)

    def _create(self, dim: int) -> Any:
        """The empty table, in `FILE_FORMAT`; a concurrent first writer may create it at the same moment:
        both then write into the one that won."""
        import lance

        try:
            return lance.write_dataset(schema(dim).empty_table(), self.path, mode="create", data_storage_version=FILE_FORMAT,
                                       storage_options=self.storage_options)
        except OSError:  # "Dataset already exists", or a storage error: then there is no table either
            existing = self.dataset()
            if existing is None:
                raise
            return existing


@dataclass(frozen=True)
class FragmentRows:
    """Live rows [offset, offset + limit) of one fragment, and the state of the piece it belongs to."""

    fragment_id: int
    state: PieceState
    offset: int
    limit: int
    whole: bool  # every live row of the fragment


@dataclass(frozen=True)
class LancePart:
    """Rows of one version of a table, piece by piece: what one Dask task reads, on its own worker.

    Every batch comes from one piece and names it (`DocumentBatch.piece`), so the run can leave
    a pass per piece for the condition checks that follow it.
    """

    documents: LanceDocuments
    version: int
    rows: tuple[FragmentRows, ...]

    def batches(self, *, ids: bool = True, with_payloads: bool = False) -> Iterator[DocumentBatch]:
        dataset = self.documents.dataset(self.version)
        columns = _columns(ids, with_payloads)
        for state, rows in itertools.groupby(self.rows, key=lambda r: r.state):
            for batch in _coalesced(_read(dataset, list(rows), columns)):
                yield _document_batch(batch, ids=ids, with_payloads=with_payloads, piece=state)


@dataclass(frozen=True)
class LanceSnapshot:
    """One version of a table, as a run reads it: a random sample by row number, and parts of `PART_ROWS`."""

    documents: LanceDocuments
    version: int | None  # None: the table does not exist yet
    count: int
    dimension: int | None

    def parts(self) -> list[LancePart]:
        """Parts of about `PART_ROWS` rows in table order; a fragment may span two parts, and a part many fragments."""
        parts: list[LancePart] = []
        pending: list[FragmentRows] = []
        room = PART_ROWS
        for state, fragments in self._pieces(self._open()):
            for fragment in fragments:
                live, offset = fragment.metadata.num_rows, 0
                while offset < live:
                    taken = min(room, live - offset)
                    pending.append(FragmentRows(fragment.fragment_id, state, offset, taken, taken == live))
                    offset, room = offset + taken, room - taken
                    if room == 0:
                        parts.append(LancePart(self.documents, self.version, tuple(pending)))
                        pending, room = [], PART_ROWS
        if pending:
            parts.append(LancePart(self.documents, self.version, tuple(pending)))
        return parts

    def pieces(self) -> list[LancePiece]:
        """The version's fragments grouped into pieces, each with its state (see `fragment_pieces`)."""
        dataset = self._open()
        return [LancePiece(self.documents, dataset, fragments, state) for state, fragments in self._pieces(dataset)]

    def sample(self, size: int, *, random_state: int = 42) -> tuple[list[str], np.ndarray, list[str | None], int]:
        """A uniform sample of at most `size` documents (ids, vectors, payloads) by random row numbers, and the count."""
        if self.version is None or self.count == 0:
            return [], np.empty((0, 0), np.float32), [], 0
        rows = sample_rows(self.count, size, random_state=random_state)
        if rows is None:  # the whole table
            batches = list(self.documents.batches(with_payloads=True, version=self.version))
            return ([i for b in batches for i in b.ids], np.concatenate([b.vectors for b in batches]),
                    [p for b in batches for p in b.payloads], self.count)
        batch = _document_batch(_take(_live(self._open()), rows, ["id", "vector", "payload"]), ids=True,
                                with_payloads=True)
        return batch.ids, batch.vectors, batch.payloads, self.count

    def _open(self) -> Any:
        return None if self.version is None else self.documents.dataset(self.version)

    def _pieces(self, dataset: Any) -> list[tuple[PieceState, list[Any]]]:
        if dataset is None:
            return []
        return pieces_of(self.documents.uri, self.documents.table_name, self.version, _live(dataset))


@dataclass(frozen=True)
class LancePiece:
    """A piece of a table version (one large fragment, or small ones), as a condition check reads it."""

    documents: LanceDocuments
    dataset: Any  # lance.LanceDataset, at the snapshot's version
    fragments: list[Any]  # lance.LanceFragment
    state: PieceState

    def vectors(self) -> Iterator[np.ndarray]:
        return _vectors(self.dataset, self.fragments)

    def changes_since(self, earlier: PieceState) -> tuple[Iterator[np.ndarray], list[np.ndarray]] | None:
        """What brings a pass over this piece in its `earlier` state up to date: the vectors to add
        (its fragments new since, streamed) and to take away (its rows deleted since, read from
        the earlier version). None when reading the piece whole is cheaper, or the only way
        (see `fragment_pieces.removed_since`).
        """
        live_now = {f.fragment_id: f for f in self.fragments}
        removed = removed_since(earlier, self.state, live_now, lambda: self.dataset.checkout_version(earlier.version))
        if removed is None:
            return None
        known = {f.fragment_id for f in earlier.fragments}
        added = [f for f in self.fragments if f.fragment_id not in known]
        if sum(len(rows) for _, rows in removed) + sum(f.metadata.num_rows for f in added) >= sum(
                f.metadata.num_rows for f in self.fragments):
            return None
        taken = [_document_batch(_take([old], rows[start : start + BATCH_ROWS], ["vector"]), ids=False,
                                 with_payloads=False).vectors
                 for old, rows in removed for start in range(0, len(rows), BATCH_ROWS)]
        return _vectors(self.dataset, added), taken


def _live(dataset: Any) -> list[Any]:
    """The fragments with rows, in table order (row numbers count through them)."""
    return [f for f in dataset.get_fragments() if f.metadata.num_rows]


def _take(fragments: list[Any], rows: np.ndarray, columns: list[str]) -> pa.RecordBatch:
    """Rows by number (sorted) across the fragments, fragment by fragment.

    Lance's own `dataset.take` maps row numbers through the deletion files first, which once
    a collection has had one update or delete took 26 s for 131,072 rows of 1M (0.36 s this
    way, the same rows).
    """
    starts = np.cumsum([0] + [f.metadata.num_rows for f in fragments])
    which = np.searchsorted(starts, rows, side="right") - 1
    taken = [fragments[i].take(rows[which == i] - starts[i], columns=columns) for i in np.unique(which)]
    return pa.concat_tables(taken).combine_chunks().to_batches()[0]


def _vectors(dataset: Any, fragments: list[Any]) -> Iterator[np.ndarray]:
    if fragments:
        for batch in _coalesced(_scan(dataset, fragments, ["vector"])):
            yield _document_batch(batch, ids=False, with_payloads=False).vectors


def _read(dataset: Any, rows: list[FragmentRows], columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The rows in order: runs of whole fragments in one scan, part of a fragment by offset and limit."""
    for whole, run in itertools.groupby(rows, key=lambda r: r.whole):
        if whole:
            yield from _scan(dataset, [dataset.get_fragment(r.fragment_id) for r in run], columns)
        else:
            for r in run:
                yield from dataset.get_fragment(r.fragment_id).to_batches(
                    columns=columns, batch_size=BATCH_ROWS, offset=r.offset, limit=r.limit,
                    batch_readahead=_READ_AHEAD, io_buffer_size=_IO_BUFFER)


def _scan(dataset: Any, fragments: list[Any], columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Whole fragments in order, in one scan: over many small fragments it is 5x faster than
    reading them one by one (2,000 fragments of 100 rows: 0.15 s against 0.7 s)."""
    return dataset.scanner(columns=columns, fragments=fragments, batch_size=BATCH_ROWS, scan_in_order=True,
                           batch_readahead=_READ_AHEAD, io_buffer_size=_IO_BUFFER).to_batches()


def _coalesced(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Batches of about `BATCH_ROWS` rows: Lance gives one batch per fragment at most, and a
    collection filled by small adds has fragments of a few rows (one numpy call and one
    Parquet row group each, otherwise)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= BATCH_ROWS:
            yield _joined(pending)
            pending, rows = [], 0
    if pending:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)


def _columns(ids: bool, with_payloads: bool) -> list[str]:
    return ["id"] * ids + ["vector"] + ["payload"] * with_payloads


def _document_batch(batch: pa.RecordBatch, *, ids: bool, with_payloads: bool,
                    piece: PieceState | None = None) -> DocumentBatch:
    vectors = batch.column("vector")
    dim = vectors.type.list_size
    return DocumentBatch(batch.column("id").to_pylist() if ids else [],
                         vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim),
                         batch.column("payload").to_pylist() if with_payloads else [], piece)


class _Checked:
    """An add's batches on their way to Lance, each checked as it is read, and the whole add's
    ids checked for repeats after the last one: a problem ends the stream before Lance can
    commit. Lance reports it as its own error; `problem` keeps it as it was raised."""

    def __init__(self, batches: Iterator[pa.RecordBatch], dim: int) -> None:
        self.batches, self.dim = batches, dim
        self.rows = 0
        self.problem: Exception | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        ids: list[pa.Array] = []
        try:
            for batch in self.batches:
                _check(batch, self.rows, self.dim)
                ids.append(batch.column("id"))
                self.rows += batch.num_rows
                yield batch
            repeated = _repeated_id(pa.chunked_array(ids, pa.string()))
            if repeated is not None:
                raise DataError(f"document id {repeated!r} appears more than once in the same add")
        except Exception as exc:
            self.problem = exc
            raise


def _check(batch: pa.RecordBatch, offset: int, dim: int) -> None:
    vector_type = batch.schema.field("vector").type
    if vector_type.list_size != dim:
        raise DataError(f"dimension {vector_type.list_size} does not match the collection's dimension {dim}")
    values = batch.column("vector").values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise DataError(f"{len(bad)} vector(s) contain NaN or inf, first at row {offset + int(bad[0])}")
    ids = batch.column("id")
    if ids.null_count:
        raise DataError(f"the id of row {offset + pc.index(pc.is_null(ids), True).as_py()} is null")
    if len(ids) and pc.min(pc.utf8_length(ids)).as_py() == 0:
        raise DataError("ids must be non-empty strings")
    repeated = _repeated_id(ids)
    if repeated is not None:
        raise DataError(f"document id {repeated!r} appears more than once in the same batch")


def _repeated_id(ids: pa.Array | pa.ChunkedArray) -> str | None:
    """One id that occurs more than once, or None when all are distinct."""
    if pc.count_distinct(ids).as_py() == len(ids):
        return None
    return next(v["values"] for v in pc.value_counts(ids).to_pylist() if v["counts"] > 1)
