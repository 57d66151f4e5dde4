"""Every document of a run to its cluster: part by part, in this process or on a Dask cluster.

A part is a slice of a pinned collection (`LancePart`, read by whoever runs it) or a whole
stream-only source. In-process, batches go straight from the reader to the results file,
one at a time. With a Dask scheduler address (setting `CLUSTER_TRIGGERS_DASK_ADDRESS`),
each part is one task: the worker reads its part itself, assigns it with the model sent
once to every worker, and sends back only ids, cluster ids, distances and a `Tally`; the
vectors never pass through the run's process. Dask rather than Ray: Prefect's own
`prefect-dask` runs on it, a `LocalCluster` needs nothing but pip, and it ships numpy
arrays and scikit-learn models as they are.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from prefect_cluster_triggers.flows.engine.pipeline import Model, Tally, assign

MembersSink = Callable[[Sequence[str], np.ndarray, np.ndarray], None]
"""Receives one batch of members: document ids, stable cluster ids, distances."""

_IN_FLIGHT_PER_WORKER = 2  # parts running or waiting per worker: enough to keep it busy, little held


def assign_parts(model: Model, parts: list[Any], sink: MembersSink, *, dask_address: str | None = None) -> Tally:
    """Assign every document of `parts` (objects with `batches()`), writing members to `sink`; the summed tally.

    Members reach `sink` in the parts' order whatever order the tasks finish in, so a run's
    members file is the same in-process and on Dask.
    """
    if dask_address is None:
        return sum((assign_part(model, part, sink) for part in parts), Tally())
    return _on_dask(model, parts, sink, dask_address)


def assign_part(model: Model, part: Any, sink: MembersSink) -> Tally:
    """One part, batch by batch: what a Dask task runs, and what the in-process run runs for every part."""
    tally = Tally()
    for batch in part.batches(with_payloads=False):
        cluster_of, distance, batch_tally = assign(model, batch.ids, batch.vectors, batch.piece)
        sink(batch.ids, cluster_of, distance)
        tally += batch_tally
    return tally


def _on_dask(model: Model, parts: list[Any], sink: MembersSink, address: str) -> Tally:
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        shared = client.scatter(model, broadcast=True)
        window = max(1, _IN_FLIGHT_PER_WORKER * len(client.nthreads()))
        pending = [client.submit(_remote_part, shared, part, pure=False) for part in parts[:window]]
        tally = Tally()
        for index in range(len(parts)):
            if index + window < len(parts):
                pending.append(client.submit(_remote_part, shared, parts[index + window], pure=False))
            members, part_tally = pending[index].result()
            pending[index].release()
            for ids, cluster_of, distance in members:
                sink(ids, cluster_of, distance)
            tally += part_tally
        return tally


def _remote_part(model: Model, part: Any) -> tuple[list[tuple[Sequence[str], np.ndarray, np.ndarray]], Tally]:
    members: list[tuple[Sequence[str], np.ndarray, np.ndarray]] = []
    tally = assign_part(model, part, lambda ids, cluster_of, distance: members.append((ids, cluster_of, distance)))
    return members, tally
