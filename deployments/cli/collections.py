"""`cluster-triggers collections`: add, list, delete and announce documents of the namespace's collections.

The blocks (and Prefect with them) are imported when a command runs, so that `--help` and
the commands that need no Prefect stay fast.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from datetime import timezone
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterable, Iterator, Optional

import typer

from prefect_cluster_triggers.core.contract import EventType
from prefect_cluster_triggers.core.errors import ClusterTriggersError, ContractError, Problem
from prefect_cluster_triggers.core.models import format_utc
from prefect_cluster_triggers.core.names import namespace_id_of, owned_name
from prefect_cluster_triggers.deployments.cli.common import AsJson, Namespace, needs_prefect, print_json, print_table
from prefect_cluster_triggers.deployments.cli.documents import read_text

if TYPE_CHECKING:
    import pyarrow as pa
    from prefect.blocks.core import Block

app = typer.Typer(name="collections", help="Document collections (LanceDB tables).", no_args_is_help=True)

CollectionId = Annotated[str, typer.Argument(metavar="COLLECTION_ID", help="Collection id (created on first add).")]


@app.command("add", help="Add or replace documents by id, streaming the file (collection created if "
             "new). All or nothing: one commit, or nothing written and exit 2.")
@needs_prefect
def add(
    collection_id: CollectionId,
    vectors: Annotated[str, typer.Option(metavar="FILE", help=".npy float matrix (one row per document), .parquet "
                                         "(id, vector, payload columns) or .jsonl ({id, vector, payload} per line).")],
    ids: Annotated[Optional[str], typer.Option(metavar="FILE.txt", help="With .npy: one id per line (default: "
                                               "<prefix>-<row>, 32 random hex digits drawn for this add and the row "
                                               "from 0; the output's id_prefix).")] = None,
    payloads: Annotated[Optional[str], typer.Option(metavar="FILE.jsonl", help="With .npy: one JSON payload per line.")] = None,
    namespace: Namespace = None,
) -> int:
    """Stream a file of documents into a Lance collection in one commit, so a failed add leaves nothing half-written."""
    from prefect_cluster_triggers.blocks.collections import open_collection
    from prefect_cluster_triggers.blocks.files.document_input import open_input

    collection = open_collection(collection_id, namespace)
    try:
        source = open_input(vectors, ids=ids, payloads=payloads)
        with _progress(source.rows, f"adding to {collection_id}") as advance:
            counts = collection.upsert_batches(_advancing(source.batches, advance))
    except ClusterTriggersError as exc:
        raise ContractError([_problem(str(exc), vectors)]) from None
    given = {"id_prefix": source.id_prefix} if source.id_prefix else {}  # the ids this add gave: <prefix>-<row>
    print_json({"collection_id": collection_id, "added": counts.inserted, "updated": counts.updated,
                "total": collection.count(), **given})
    return 0


@app.command("ls", help="List the namespace's collections: kind, documents, dimension, version and "
             "last change (Lance); HTTP and PostgreSQL sources by kind only.")
@needs_prefect
def ls(as_json: AsJson = False, namespace: Namespace = None) -> int:
    """What the namespace can cluster, with each Lance table's size and version, as a table or JSON."""
    from prefect_cluster_triggers.deployments.service.queries import run_sync

    namespace_id = namespace_id_of(namespace)
    found = sorted((_collection_row(kind, name) for kind, name in run_sync(_collection_blocks(namespace_id))),
                   key=lambda row: row["collection_id"])
    if as_json:
        print_json({"namespace_id": namespace_id, "collections": found})
        return 0
    print_table(("COLLECTION", "KIND", "DOCUMENTS", "DIMENSION", "VERSION", "CHANGED"),
                [(c["collection_id"], c["kind"], *("-" if c[k] is None else str(c[k]) for k in
                                                    ("documents", "dimension", "version", "changed_at")))
                 for c in found])
    return 0


@app.command("delete", help="Delete documents by id.")
@needs_prefect
def delete(
    collection_id: CollectionId,
    document_ids: Annotated[Optional[list[str]], typer.Option("--id", metavar="ID", help="Repeatable.")] = None,
    ids: Annotated[Optional[str], typer.Option(metavar="FILE.txt", help="One id per line.")] = None,
    namespace: Namespace = None,
) -> int:
    """Remove documents from a Lance collection by id (an HTTP source deletes at its own end)."""
    from prefect_cluster_triggers.blocks.collections import LanceCollection, load_collection

    chosen = list(document_ids or []) + (read_text(ids).splitlines() if ids else [])
    if not chosen:
        raise ContractError([Problem("--id", "give the ids to delete with --id ID (repeatable) or --ids FILE")])
    collection = load_collection(collection_id, namespace)
    if not isinstance(collection, LanceCollection):
        raise ContractError([Problem(collection_id, "documents of an HTTP collection are deleted at their source")])
    deleted = collection.delete_documents([i for i in chosen if i])
    print_json({"collection_id": collection_id, "deleted": deleted, "total": collection.count()})
    return 0


@app.command("notify", help="Tell event triggers that documents of a collection (stored elsewhere) changed.")
@needs_prefect
def notify(
    collection_id: CollectionId,
    event_type: EventType,
    count: Annotated[Optional[int], typer.Option(help="How many documents (default 1).")] = None,
    namespace: Namespace = None,
) -> int:
    """Emit the collection event that event triggers count, for documents this CLI did not write."""
    from prefect_cluster_triggers.blocks.collection_events import notify_collection

    notify_collection(collection_id, event_type.value, count=count, flush=True, namespace=namespace)
    print_json({"collection_id": collection_id, "event": event_type.value, "count": count or 1})
    return 0


def _collection_kinds() -> dict[type[Block], str]:
    """Each collection block type and the kind `ls` shows for it."""
    from prefect_cluster_triggers.blocks.collections import HttpCollection, LanceCollection, PostgresCollection

    return {LanceCollection: "lance", HttpCollection: "http", PostgresCollection: "postgres"}


async def _collection_blocks(namespace_id: str) -> list[tuple[type[Block], str]]:
    """(kind, block name) of every collection block `namespace_id` owns: those named with its prefix."""
    import httpx
    from prefect.client.orchestration import get_client

    from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE

    prefix = owned_name(namespace_id, "")  # `ns-<16 hex>--`, what all of its block names start with
    found = []
    async with get_client() as client:
        for kind in _collection_kinds():
            offset = 0
            while True:
                try:
                    page = await client.read_block_documents_by_type(kind.get_block_type_slug(), offset=offset,
                                                                     limit=PAGE, include_secrets=False)
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code == 404:
                        break  # the block type was never registered: no block of it
                    raise
                found += [(kind, d.name) for d in page if d.name and d.name.startswith(prefix)]
                if len(page) < PAGE:
                    break
                offset += len(page)
    return found


def _collection_row(kind: type[Block], name: str) -> dict[str, Any]:
    """One collection as `collections ls` shows it: a Lance table's size, dimension and current version
    with its commit time; for a source stored elsewhere (HTTP, PostgreSQL) its kind only, since
    listing should not query other teams' systems."""
    from prefect_cluster_triggers.blocks.collections import LanceCollection

    block = kind.load(name)
    row = {"collection_id": block.collection_id, "kind": _collection_kinds()[kind], "documents": None,
           "dimension": None, "version": None, "changed_at": None}
    if isinstance(block, LanceCollection):
        snapshot = block.snapshot()
        row["documents"] = snapshot.count
        if snapshot.version is not None:  # None: made, but no document added yet
            versions = snapshot.documents.dataset().versions()  # every version's; no checkout of one needed
            changed = next(v["timestamp"] for v in versions if v["version"] == snapshot.version)
            row.update(dimension=snapshot.dimension, version=snapshot.version,
                       changed_at=format_utc(changed.astimezone(timezone.utc)))
    return row


def _problem(message: str, where: str) -> Problem:
    """`<file[:line]>: <what>` as one problem line; a message without a location gets `where`."""
    location, _, what = message.partition(": ")
    return Problem(location, what) if what and ("/" in location or "." in location) else Problem(where, message)


@contextmanager
def _progress(total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (stderr), nothing in a pipe or a test."""
    if not sys.stderr.isatty():
        yield lambda rows: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task(description, total=total)
        yield lambda rows: progress.advance(task, rows)


def _advancing(batches: Iterable[pa.RecordBatch], advance: Callable[[int], None]) -> Iterator[pa.RecordBatch]:
    """The batches unchanged, moving the progress bar by each one's rows."""
    for batch in batches:
        yield batch
        advance(batch.num_rows)
