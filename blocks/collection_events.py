"""Collection events: how ingestion tells event triggers that documents arrived or changed.

One line in any pipeline, inside this project or not:

    ```python
    from prefect_cluster_triggers.blocks.collection_events import notify_collection

    notify_collection("support-tickets", "documents_added", count=500)
    ```

It emits the Prefect event `cluster.<event_type>` for resource
`collection.<namespace id>.<collection_id>` (the settings' namespace unless `namespace=` names
one), so only that namespace's event triggers count it, with payload `{"count": N}` (the documents added or updated; a `batch_completed` counts as
one batch whatever its count). Prefect sends events in the background and flushes them when
the process exits; `flush=True` waits until they are sent.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.events.worker import EventsWorker

from prefect_cluster_triggers.core.contract import EventType
from prefect_cluster_triggers.core.errors import DataError
from prefect_cluster_triggers.core.firing import EVENT_NAMES, collection_resource
from prefect_cluster_triggers.core.names import namespace_id_of


def notify_collection(
    collection_id: str, event_type: str = "documents_added", *, count: int | None = None, flush: bool = False,
    namespace: str | None = None, **details: Any,
) -> None:
    """Emit one collection event for the event triggers of `namespace` (a name or id) watching `collection_id`.

    Raises:
        DataError: an unknown event type or a count that is not a positive integer.
    """
    try:
        kind = EventType(event_type)
    except ValueError:
        allowed = ", ".join(t.value for t in EventType)
        raise DataError(f"event_type: unknown event {event_type!r}; allowed: {allowed}") from None
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise DataError(f"count: must be a positive integer (got {count!r})")
    payload = {**details, **({"count": int(count)} if count is not None else {})}
    emit_event(event=EVENT_NAMES[kind], resource={"prefect.resource.id": collection_resource(namespace_id_of(namespace), collection_id)},
               payload=payload)
    if flush:
        EventsWorker.drain_all()
