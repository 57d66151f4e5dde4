"""The benchmarks' own Prefect server: SQLite in a temporary data directory, on a free port.

Each benchmark that needs Prefect starts one, so nothing of a running `make run` (or of an
earlier benchmark) is measured with it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def private_prefect(prefix: str, **settings: str) -> Iterator[tuple[dict[str, str], Path]]:
    """Start the server; yield the environment that points at it (also set in this process) and the data
    directory, removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({"CLUSTER_TRIGGERS_DATA_DIR": str(data_dir), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       **settings})
    from prefect_cluster_triggers.deployments.stack.processes import free_port, prefect_server

    env = {**os.environ, "PREFECT_HOME": str(data_dir / "prefect"),
           "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5"}
    try:
        with prefect_server(free_port(), env, log=data_dir / "server.log") as url:
            env["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"] = url
            yield env, data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
