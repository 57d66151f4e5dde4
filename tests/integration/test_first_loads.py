"""Two first loads of one collection at once, as two machines would run them: no id stored twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prefect_cluster_triggers.blocks.collections import open_collection

_LOADER = """
import json, os, sys, time, numpy as np
from prefect_cluster_triggers.blocks.files.lance_documents import record_batch
from prefect_cluster_triggers.blocks.collections import open_collection
me, go = int(sys.argv[1]), sys.argv[2]
collection = open_collection("col_first_loads")
ids = [str(i) for i in range(me * 100_000, me * 100_000 + 200_000)]  # 100,000 ids in both loads
while not os.path.exists(go):
    time.sleep(0.001)
counts = collection.upsert_batches(record_batch(np.full((50_000, 8), me + 1.0), ids[s:s + 50_000])
                                   for s in range(0, len(ids), 50_000))
print(json.dumps([counts.inserted, counts.updated]))
"""


def test_two_first_loads_at_once_store_every_id_once(prefect_api: str, tmp_path: Path) -> None:
    collection = open_collection("col_first_loads")  # the block only: no documents yet
    go = tmp_path / "go"
    loaders = [subprocess.Popen([sys.executable, "-c", _LOADER, str(me), str(go)], stdout=subprocess.PIPE,
                                text=True, env=os.environ) for me in range(2)]
    time.sleep(10)  # both started and waiting
    go.touch()
    answers = [json.loads(loader.communicate(timeout=300)[0]) for loader in loaders]
    assert all(loader.returncode == 0 for loader in loaders)
    ids = [i for batch in collection.batches() for i in batch.ids]
    assert len(ids) == len(set(ids)) == 300_000
    assert sorted(answers) == [[100_000, 100_000], [200_000, 0]]  # one loaded in bulk, the other merged
