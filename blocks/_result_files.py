"""The on-disk format of clustering results: one immutable directory per run, and a pointer.

    <owner>/runs/<run id>/run.json      metadata, metrics, timings, clusters (ids, sizes, keywords)
    <owner>/runs/<run id>/centroids.npy one row per cluster, in run.json's cluster order
    <owner>/runs/<run id>/members.npz   ids, cluster, distance: one entry per document
    <owner>/LATEST                      the run id readers see

A run is written into a hidden temporary directory and renamed into place; only then does
LATEST move (`os.replace`). A failed or killed run leaves at most a hidden directory
behind: readers keep seeing the previous complete result.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prefect_cluster_triggers.flows.errors import NotFound


@dataclass(frozen=True)
class StoredRun:
    """A complete run as read back: its record and its arrays."""

    record: dict[str, Any]
    centroids: np.ndarray
    path: Path

    def members(self) -> list[dict[str, Any]]:
        with np.load(self.path / "members.npz") as members:
            return [
                {"id": str(i), "cluster": int(c), "distance": None if np.isnan(d) else round(float(d), 6)}
                for i, c, d in zip(members["ids"], members["cluster"], members["distance"])
            ]


class ResultFiles:
    """Results of every owner (a trigger or a cluster definition) under one root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(
        self,
        owner: str,
        run_id: str,
        record: dict[str, Any],
        centroids: np.ndarray,
        ids: Any,
        cluster: np.ndarray,
        distance: np.ndarray,
    ) -> Path:
        """Write one run atomically and make it the latest."""
        runs = self.root / owner / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        final = runs / run_id
        if final.exists():
            raise FileExistsError(f"results of run {run_id} already exist; a run's results never change")
        staging = runs / f".{run_id}.{uuid.uuid4().hex}.partial"
        staging.mkdir()
        try:
            (staging / "run.json").write_text(json.dumps(record, indent=2))
            np.save(staging / "centroids.npy", centroids)
            np.savez(staging / "members.npz", ids=np.asarray(ids, dtype=str), cluster=cluster, distance=distance)
            for name in ("run.json", "centroids.npy", "members.npz"):
                _fsync(staging / name)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        pointer = self.root / owner / f".LATEST.{uuid.uuid4().hex}"
        pointer.write_text(run_id)
        _fsync(pointer)
        os.replace(pointer, self.root / owner / "LATEST")
        return final

    def latest(self, owner: str) -> StoredRun:
        """The latest complete run of `owner`.

        Raises:
            NotFound: the owner has no complete run yet.
        """
        try:
            run_id = (self.root / owner / "LATEST").read_text().strip()
        except FileNotFoundError:
            raise NotFound(f"no results yet for {owner!r}") from None
        path = self.root / owner / "runs" / run_id
        return StoredRun(json.loads((path / "run.json").read_text()), np.load(path / "centroids.npy"), path)


    def record_of(self, owner: str, run_id: str) -> dict[str, Any]:
        """The record of one run of `owner`; empty when the run left no result (it failed, or still runs)."""
        try:
            return json.loads((self.root / owner / "runs" / run_id / "run.json").read_text())
        except FileNotFoundError:
            return {}


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
