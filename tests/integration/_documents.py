"""A whole (small) collection in memory, as the collection tests compare it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from prefect_cluster_triggers.flows.engine.keywords import payload_text
from prefect_cluster_triggers.flows.engine.pipeline import Documents


def read_documents(source: Any) -> Documents:
    """Every batch of `source`, joined: ids, vectors, and the payloads' text (empty when there is none)."""
    batches = list(source.batches(with_payloads=True))
    texts = [payload_text(json.loads(p)) if p else "" for b in batches for p in b.payloads]
    vectors = np.concatenate([b.vectors for b in batches]) if batches else np.empty((0, 0), np.float32)
    return Documents([i for b in batches for i in b.ids], vectors, texts if any(texts) else ())
