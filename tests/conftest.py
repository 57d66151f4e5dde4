"""Session-wide test set-up: a private data directory, no telemetry."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["CLUSTER_TRIGGERS_DATA_DIR"] = tempfile.mkdtemp(prefix="cluster-triggers-tests-")
