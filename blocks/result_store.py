"""Where clustering results go: immutable per run, `latest` moving only after a complete write."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from prefect.blocks.core import Block
from pydantic import Field

from prefect_cluster_triggers.blocks._naming import load_or_save
from prefect_cluster_triggers.blocks._result_files import ResultFiles, StoredRun
from prefect_cluster_triggers.blocks.collections import DOCS_URL
from prefect_cluster_triggers.deployments.settings import get_settings

DEFAULT_STORE = "default"


class LocalResultStore(Block):
    """Clustering results on local disk, one directory per run and a `LATEST` pointer per trigger or cluster.

    Example:
        ```python
        from prefect_cluster_triggers.blocks.result_store import LocalResultStore

        run = LocalResultStore.load("default").latest("cluster_xyz789")
        print(run.record["num_clusters"])
        ```
    """

    _block_type_name: ClassVar[str] = "Local Result Store"
    _documentation_url: ClassVar[str] = DOCS_URL

    path: str | None = Field(default=None, description="Root directory; `<data dir>/results` when empty.")

    @property
    def files(self) -> ResultFiles:
        return ResultFiles(Path(self.path) if self.path else get_settings().data_dir / "results")

    def write_run(self, owner: str, run_id: str, record: dict[str, Any], centroids: np.ndarray, ids: Any,
                  cluster: np.ndarray, distance: np.ndarray) -> Path:
        return self.files.write(owner, run_id, record, centroids, ids, cluster, distance)

    def latest(self, owner: str) -> StoredRun:
        return self.files.latest(owner)


def default_result_store() -> LocalResultStore:
    """The store saved as `default`; saved now, at this data directory's absolute path, when there is none.

    Saving it fixes one place for the whole Prefect server: a run on any worker writes where
    `get` and `history` read, instead of each process picking its own data directory.
    """
    root = get_settings().data_dir.resolve() / "results"
    return load_or_save(LocalResultStore, DEFAULT_STORE, lambda: LocalResultStore(path=str(root)))
