"""The on-disk format of a local collection: append-only files and a manifest.

    manifest.json   {"dim", "count", "ids_bytes", "payloads_bytes"}: what is committed
    vectors.f32     count x dim float32, row-major, no header (memory-mappable as is)
    ids.txt         one id per line
    payloads.jsonl  one JSON payload (or null) per line

An add appends past the committed end of each file, fsyncs, and only then replaces the
manifest atomically (`os.replace`). A crash mid-add leaves bytes past the committed end,
which readers never see and the next add overwrites: nothing stored is lost, nothing
half-written is read. Concurrent adds serialise on a lock file.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from prefect_cluster_triggers.flows.errors import DataError

_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class _Manifest:
    dim: int | None = None
    count: int = 0
    ids_bytes: int = 0
    payloads_bytes: int = 0


class DocumentFiles:
    """A collection directory; safe for many readers and concurrent writers."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self) -> int:
        return self._manifest().count

    def append(self, vectors: np.ndarray, ids: Sequence[str] | None, payloads: Sequence[Any] | None) -> int:
        """Append documents atomically and return the new total.

        Raises:
            DataError: wrong shape, a dimension change, NaN or inf, or ids that are
                duplicated, contain a line break, or already exist.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise DataError(f"vectors must be a non-empty 2-d array (documents x dimensions), got shape {vectors.shape}")
        bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad_rows):
            raise DataError(f"{len(bad_rows)} vector(s) contain NaN or inf, first at row {int(bad_rows[0])}")
        for name, values in (("ids", ids), ("payloads", payloads)):
            if values is not None and len(values) != len(vectors):
                raise DataError(f"{len(values)} {name} for {len(vectors)} vectors")
        self.path.mkdir(parents=True, exist_ok=True)
        with self._locked():
            manifest = self._manifest()
            if manifest.dim is not None and vectors.shape[1] != manifest.dim:
                raise DataError(
                    f"dimension {vectors.shape[1]} does not match the collection's dimension {manifest.dim}"
                )
            new_ids = [str(manifest.count + i) for i in range(len(vectors))] if ids is None else [str(i) for i in ids]
            self._check_ids(new_ids, manifest)
            self._append("vectors.f32", manifest.count * vectors.shape[1] * 4, vectors.tobytes())
            ids_end = self._append("ids.txt", manifest.ids_bytes, "".join(f"{i}\n" for i in new_ids).encode())
            lines = "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in (payloads or [None] * len(vectors)))
            payloads_end = self._append("payloads.jsonl", manifest.payloads_bytes, lines.encode())
            committed = _Manifest(vectors.shape[1], manifest.count + len(vectors), ids_end, payloads_end)
            self._write_manifest(committed)
            return committed.count

    def read(self, *, writable: bool = False) -> tuple[list[str], np.ndarray]:
        """Ids and the committed vectors as one float32 matrix.

        Read-only, the matrix is a memory map: no copy at all. Writable (a run that
        normalises in place), it is read into memory with one sequential read, several
        times faster than copy-on-write page faults, and still the only copy.
        """
        manifest = self._manifest()
        if manifest.count == 0 or manifest.dim is None:
            return [], np.empty((0, manifest.dim or 0), dtype=np.float32)
        shape = (manifest.count, manifest.dim)
        path = self.path / "vectors.f32"
        if writable:
            vectors = np.fromfile(path, dtype=np.float32, count=shape[0] * shape[1]).reshape(shape)
        else:
            vectors = np.memmap(path, dtype=np.float32, mode="r", shape=shape)
        return self._read_lines("ids.txt", manifest.ids_bytes), vectors

    def read_payloads(self) -> list[Any]:
        manifest = self._manifest()
        return [json.loads(line) for line in self._read_lines("payloads.jsonl", manifest.payloads_bytes)]

    def _check_ids(self, new_ids: list[str], manifest: _Manifest) -> None:
        if len(set(new_ids)) != len(new_ids):
            raise DataError("the ids of the new documents are not unique")
        if any("\n" in i or "\r" in i or not i for i in new_ids):
            raise DataError("ids must be non-empty and on one line")
        existing = set(self._read_lines("ids.txt", manifest.ids_bytes))
        clash = next((i for i in new_ids if i in existing), None)
        if clash is not None:
            raise DataError(f"document id {clash!r} is already in the collection")

    def _append(self, name: str, committed: int, data: bytes) -> int:
        with open(self.path / name, "a+b") as handle:
            handle.truncate(committed)  # drop whatever a crashed add left past the committed end
            handle.seek(committed)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            return committed + len(data)

    def _read_lines(self, name: str, length: int) -> list[str]:
        if length == 0:
            return []
        with open(self.path / name, "rb") as handle:
            return handle.read(length).decode().splitlines()

    def _manifest(self) -> _Manifest:
        try:
            return _Manifest(**json.loads((self.path / _MANIFEST).read_text()))
        except FileNotFoundError:
            return _Manifest()

    def _write_manifest(self, manifest: _Manifest) -> None:
        temporary = self.path / f".{_MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest.__dict__))
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self.path / _MANIFEST)
        directory = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
