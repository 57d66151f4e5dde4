"""The stored form of clustering results: Parquet and JSON, immutable per run, and a pointer.

    <owner>/runs/<run id>/members.parquet    id, cluster (-1 noise), distance: one row per document
    <owner>/runs/<run id>/centroids.parquet  cluster (index in run.json's cluster order), centroid
    <owner>/runs/<run id>/passes.parquet     place, version, fragments, documents, similarity_sum, counts,
                                             sums: the condition pass over each piece of the Lance
                                             collections (see `fragment_pieces`) against the centroids
    <owner>/runs/<run id>/changes.json       what changed since the previous run (`flows.engine.changes`)
    <owner>/runs/<run id>/run.json           metadata, metrics, timings, clusters (ids, sizes, keywords),
                                             `previous_run_id` (the run it was compared with)
    <owner>/LATEST                           the run id readers see

Parquet so that DuckDB, pandas or Spark read a run as they find it (`SELECT cluster,
count(*) FROM 'members.parquet' GROUP BY 1`). The root is a directory or an `s3://` prefix,
the same code through pyarrow's filesystems. Each file is written aside and moved into
place (a rename on disk; on object storage every object appears whole), `run.json` last,
and only then does LATEST move: a failed or killed run leaves at most files nobody points
to, and readers keep seeing the previous complete result. Nothing here imports Prefect.
"""

from __future__ import annotations

import io
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pyarrow import fs

from prefect_cluster_triggers.blocks.files.fragment_pieces import PieceState
from prefect_cluster_triggers.core.errors import NotFound
from prefect_cluster_triggers.flows.engine.conditions import Pass


@dataclass(frozen=True)
class StoredRun:
    """A complete run as read back: its record, its centroids, and where its members are."""

    record: dict[str, Any]
    centroids: np.ndarray
    filesystem: fs.FileSystem
    path: str

    def passes(self) -> dict[PieceState, Pass]:
        """The run's condition pass over each piece it read, by the piece's state (see
        `flows.condition_check`); empty for a run that left none (stream sources only)."""
        path = f"{self.path}/passes.parquet"
        if self.filesystem.get_file_info(path).type == fs.FileType.NotFound:
            return {}
        table = pq.read_table(path, filesystem=self.filesystem)
        k, d = self.centroids.shape
        columns = {name: table.column(name).combine_chunks() for name in table.column_names}
        counts = columns["counts"].values.to_numpy().reshape(-1, k)
        sums = columns["sums"].values.to_numpy().reshape(-1, k, d)
        states = [PieceState.from_stored(*stored) for stored in zip(
            columns["place"].to_pylist(), columns["version"].to_pylist(), columns["fragments"].to_pylist())]
        return {state: Pass(similarity, documents, counts[row], sums[row]) for row, (state, documents, similarity)
                in enumerate(zip(states, columns["documents"].to_pylist(), columns["similarity_sum"].to_pylist()))}

    @property
    def members_file(self) -> str:
        """The members' Parquet file (id, cluster, distance) on `filesystem`."""
        return f"{self.path}/members.parquet"

    def changes(self) -> dict[str, Any] | None:
        """What changed since the previous run (`ChangeReport.to_dict()` with `previous_run_id`); None for a run
        stored before change reports were kept."""
        try:
            with self.filesystem.open_input_stream(f"{self.path}/changes.json") as handle:
                return json.loads(handle.read())
        except (FileNotFoundError, OSError):
            return None

    def members(self) -> list[dict[str, Any]]:
        table = pq.read_table(self.members_file, filesystem=self.filesystem)
        return [
            {"id": row["id"], "cluster": row["cluster"],
             "distance": None if row["distance"] is None or np.isnan(row["distance"]) else round(row["distance"], 6)}
            for row in table.to_pylist()
        ]

    def export_members(self, destination: Path) -> int:
        """Stream the members to a CSV, JSON Lines or Parquet file (by its suffix); the rows written.

        Batch by batch, so a run of millions of documents never sits in memory as Python
        objects; written aside and moved into place, so a killed export leaves no half file.
        A noise point's distance (NaN) is written as an empty value / null.
        """
        writer_of = _MEMBER_WRITERS.get(destination.suffix.lower())
        if writer_of is None:
            raise ValueError(f"unknown format {destination.name!r}; allowed suffixes: {', '.join(_MEMBER_WRITERS)}")
        source = pq.ParquetFile(self.filesystem.open_input_file(self.members_file))
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
        rows = 0
        try:
            with partial.open("wb") as sink, writer_of(sink, source.schema_arrow) as write:
                for batch in source.iter_batches(batch_size=65_536):
                    distance = batch.column("distance")
                    noise_as_null = pc.if_else(pc.is_nan(distance), None, distance)
                    batch = batch.set_column(batch.schema.get_field_index("distance"), "distance", noise_as_null)
                    write(batch)
                    rows += batch.num_rows
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)
        return rows


@contextmanager
def _csv_writer(sink: BinaryIO, schema: pa.Schema) -> Iterator[Callable[[pa.RecordBatch], None]]:
    with pa_csv.CSVWriter(sink, schema) as writer:
        yield writer.write_batch


@contextmanager
def _parquet_writer(sink: BinaryIO, schema: pa.Schema) -> Iterator[Callable[[pa.RecordBatch], None]]:
    with pq.ParquetWriter(sink, schema) as writer:
        yield writer.write_batch


@contextmanager
def _jsonl_writer(sink: BinaryIO, schema: pa.Schema) -> Iterator[Callable[[pa.RecordBatch], None]]:
    def write(batch: pa.RecordBatch) -> None:
        sink.write("".join(json.dumps(row, separators=(",", ":")) + "\n" for row in batch.to_pylist()).encode())

    yield write


# A member export's format, by the destination's suffix.
_MEMBER_WRITERS: dict[str, Callable[[BinaryIO, pa.Schema], Any]] = {
    ".csv": _csv_writer, ".jsonl": _jsonl_writer, ".parquet": _parquet_writer,
}


class ResultFiles:
    """Results of every owner (a trigger or a cluster definition) under one root."""

    def __init__(self, root: str, filesystem: fs.FileSystem | None = None) -> None:
        self.filesystem = filesystem or fs.LocalFileSystem()
        self.root = root.split("://", 1)[-1].rstrip("/")

    @contextmanager
    def new_run(self, owner: str, run_id: str) -> Iterator[PendingRun]:
        """A run being written: members streamed in as they are assigned, then `commit` makes it the latest.

        Leaving the block without a commit (an error, a killed run) removes the members
        written so far; LATEST never moved, so readers keep the previous complete run.
        """
        run = f"{self.root}/{owner}/runs/{run_id}"
        if self.filesystem.get_file_info(f"{run}/run.json").type != fs.FileType.NotFound:
            raise FileExistsError(f"results of run {run_id} already exist; a run's results never change")
        self.filesystem.create_dir(run, recursive=True)
        pending = PendingRun(self, owner, run, f"{run}/members.parquet.{uuid.uuid4().hex}.partial")
        try:
            yield pending
        finally:
            pending.close()
            if not pending.committed and self.filesystem.get_file_info(pending.staging).type == fs.FileType.File:
                self.filesystem.delete_file(pending.staging)

    def latest(self, owner: str) -> StoredRun:
        """The latest complete run of `owner`.

        Raises:
            NotFound: the owner has no complete run yet.
        """
        try:
            run_id = self._get(f"{self.root}/{owner}/LATEST").decode().strip()
        except FileNotFoundError:
            raise NotFound(f"no results yet for {owner!r}") from None
        return self.run(owner, run_id)

    def run(self, owner: str, run_id: str) -> StoredRun:
        """One complete run of `owner`, the latest or an earlier one (each stays readable).

        Raises:
            NotFound: `owner` has no complete run `run_id` (it failed, still runs, or is not its run).
        """
        run = f"{self.root}/{owner}/runs/{run_id}"
        try:
            record = json.loads(self._get(f"{run}/run.json"))
        except FileNotFoundError:
            raise NotFound(f"no results of run {run_id!r} for {owner!r}") from None
        table = pq.read_table(f"{run}/centroids.parquet", filesystem=self.filesystem)
        column = table.column("centroid").combine_chunks()
        centroids = column.values.to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
        return StoredRun(record, centroids, self.filesystem, run)

    def owners(self) -> list[str]:
        """Every owner that has a folder of results (whose each is, the caller decides)."""
        found = self.filesystem.get_file_info(fs.FileSelector(self.root, allow_not_found=True))
        return sorted(info.base_name for info in found if info.type == fs.FileType.Directory)

    def latest_record(self, owner: str) -> dict[str, Any]:
        """The record of `owner`'s latest complete run; empty when it has none."""
        try:
            return self.record_of(owner, self._get(f"{self.root}/{owner}/LATEST").decode().strip())
        except FileNotFoundError:
            return {}

    def move_owner(self, owner: str, to: str) -> bool:
        """Give `owner`'s runs to `to` (copied, then the old folder deleted: object stores have no
        rename); False, and nothing moved, when `to` has results already."""
        if self.filesystem.get_file_info(f"{self.root}/{to}").type != fs.FileType.NotFound:
            return False
        fs.copy_files(f"{self.root}/{owner}", f"{self.root}/{to}", source_filesystem=self.filesystem,
                      destination_filesystem=self.filesystem)
        self.filesystem.delete_dir(f"{self.root}/{owner}")
        return True

    def owner_of_run(self, run_id: str) -> str | None:
        """The owner holding the complete run `run_id` (a flow run id: at most one owner has it); None
        when no owner does. Looks at every owner's folder: whose it may be shown to is the caller's to decide."""
        owners = self.owners()
        records = self.filesystem.get_file_info([f"{self.root}/{owner}/runs/{run_id}/run.json" for owner in owners])
        return next((owner for owner, info in zip(owners, records) if info.type == fs.FileType.File), None)

    def history(self, owner: str, limit: int) -> list[dict[str, Any]]:
        """The records of `owner`'s latest complete runs, newest first, at most `limit`: from LATEST back
        along each record's `previous_run_id` (runs stored before that field end the walk). Bounded by
        `limit` reads, however many runs the owner has."""
        try:
            run_id: str | None = self._get(f"{self.root}/{owner}/LATEST").decode().strip()
        except FileNotFoundError:
            return []
        records: list[dict[str, Any]] = []
        while run_id and len(records) < limit:
            record = self.record_of(owner, run_id)
            if not record:
                break
            records.append(record)
            run_id = record.get("previous_run_id")
        return records

    def record_of(self, owner: str, run_id: str) -> dict[str, Any]:
        """The record of one run of `owner`; empty when the run left no result (it failed, or still runs)."""
        try:
            return json.loads(self._get(f"{self.root}/{owner}/runs/{run_id}/run.json"))
        except FileNotFoundError:
            return {}

    def _put(self, path: str, data: bytes) -> None:
        staging = f"{path}.{uuid.uuid4().hex}.partial"
        with self.filesystem.open_output_stream(staging) as out:
            out.write(data)
        self.filesystem.move(staging, path)

    def _get(self, path: str) -> bytes:
        try:
            with self.filesystem.open_input_stream(path) as handle:
                return handle.read()
        except (FileNotFoundError, OSError) as exc:
            if isinstance(exc, FileNotFoundError) or "not found" in str(exc).lower() or "NoSuchKey" in str(exc):
                raise FileNotFoundError(path) from None
            raise


MEMBERS_SCHEMA = pa.schema([("id", pa.string()), ("cluster", pa.int32()), ("distance", pa.float32())])


class PendingRun:
    """A run's results while they are written (see `ResultFiles.new_run`)."""

    def __init__(self, files: ResultFiles, owner: str, path: str, staging: str) -> None:
        self.files, self.owner, self.path, self.staging = files, owner, path, staging
        self._sink = files.filesystem.open_output_stream(staging)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._sink, MEMBERS_SCHEMA, compression="zstd")
        self.committed = False

    def write_members(self, ids: Any, cluster: np.ndarray, distance: np.ndarray) -> None:
        """Append one batch of members: document ids, stable cluster ids (-1 noise), distances (NaN noise)."""
        assert self._writer is not None, "the run was committed already"
        self._writer.write_batch(pa.record_batch(
            [pa.array(ids, pa.string()), pa.array(np.asarray(cluster, dtype=np.int32)),
             pa.array(np.asarray(distance, dtype=np.float32))], schema=MEMBERS_SCHEMA))

    def members_file(self) -> str:
        """The members written so far, as a Parquet file on the store's filesystem; ends the writing."""
        self.close()
        return self.staging

    def commit(self, record: dict[str, Any], centroids: np.ndarray,
               passes: Mapping[PieceState, Pass] | None = None, changes: Mapping[str, Any] | None = None) -> None:
        """Put the members in place, write the centroids (and the passes and the change report, if any) and
        the record, then move LATEST to this run."""
        self.close()
        self.files.filesystem.move(self.staging, f"{self.path}/members.parquet")
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        centres = pa.table({"cluster": pa.array(np.arange(len(centroids), dtype=np.int32)),
                            "centroid": pa.FixedSizeListArray.from_arrays(pa.array(centroids.reshape(-1)),
                                                                          max(centroids.shape[1], 1))})
        self.files._put(f"{self.path}/centroids.parquet", _parquet(centres))
        if passes:
            self.files._put(f"{self.path}/passes.parquet", _parquet(_passes_table(passes)))
        if changes is not None:
            self.files._put(f"{self.path}/changes.json", json.dumps(changes, indent=1).encode())
        self.files._put(f"{self.path}/run.json", json.dumps(record, indent=2).encode())
        self.files._put(f"{self.files.root}/{self.owner}/LATEST", self.path.rsplit("/", 1)[1].encode())
        self.committed = True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = None


def _passes_table(passes: Mapping[PieceState, Pass]) -> pa.Table:
    pieces = list(passes)
    counts = np.stack([passes[p].counts for p in pieces]).astype(np.int64)
    sums = np.stack([passes[p].sums for p in pieces]).astype(np.float64)
    return pa.table({
        "place": pa.array([p.place for p in pieces], pa.string()),
        "version": pa.array([p.version for p in pieces], pa.int64()),
        "fragments": pa.array([p.fragments_json() for p in pieces], pa.string()),
        "documents": pa.array([passes[p].documents for p in pieces], pa.int64()),
        "similarity_sum": pa.array([passes[p].similarity_sum for p in pieces], pa.float64()),
        "counts": pa.FixedSizeListArray.from_arrays(pa.array(counts.reshape(-1)), counts.shape[1]),
        "sums": pa.FixedSizeListArray.from_arrays(pa.array(sums.reshape(-1)), sums.shape[1] * sums.shape[2]),
    })


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
