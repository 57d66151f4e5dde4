"""Data saved before namespaces existed, given to one namespace (`cluster-triggers migrate`).

Collections and cluster definitions used to be blocks named by their id alone, visible to
every namespace. Such a block now belongs to no namespace, so no trigger reads it: the
operator gives all of them to the namespace that owns them, in one command. So it goes with
the results of ad-hoc and cluster-definition runs, kept in a folder named by their results id
alone. Results of triggers stay where they are (a trigger's id is unique on the server).
"""

from __future__ import annotations

from typing import Any

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import PrefectClient

from prefect_cluster_triggers.blocks.cluster_definition import ClusterDefinition
from prefect_cluster_triggers.blocks.collections import HttpCollection, LanceCollection, PostgresCollection
from prefect_cluster_triggers.blocks.files.result_files import ResultFiles
from prefect_cluster_triggers.blocks.result_store import results_owner
from prefect_cluster_triggers.core.names import is_owned, owned_name
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE

_KINDS: tuple[type[Block], ...] = (LanceCollection, HttpCollection, PostgresCollection, ClusterDefinition)


async def unowned(client: PrefectClient) -> list[tuple[type[Block], str]]:
    """Every collection and cluster definition block that belongs to no namespace: (kind, block name)."""
    found = []
    for kind in _KINDS:
        offset = 0
        while True:
            try:
                page = await client.read_block_documents_by_type(kind.get_block_type_slug(), offset=offset, limit=PAGE)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404:
                    break  # the block type was never registered: no block of it
                raise
            found += [(kind, d.name) for d in page if not d.is_anonymous and not is_owned(d.name)]
            if len(page) < PAGE:
                break
            offset += len(page)
    return found


def adopt(kind: type[Block], name: str, namespace_id: str) -> dict[str, Any]:
    """Save one unowned block again under the namespace's name for it, then delete the old one; a
    namespace that already has a block of that id keeps its own and the old one stays (reported)."""
    block = kind.load(name)
    identifier = block.cluster_id if isinstance(block, ClusterDefinition) else block.collection_id
    new_name = owned_name(namespace_id, identifier)
    moved = {"kind": kind.get_block_type_slug(), "id": identifier, "from": name, "to": new_name}
    try:
        kind.load(new_name)
    except ValueError:
        pass
    else:
        return {**moved, "moved": False, "why": "the namespace has its own already; the old block is kept"}
    if isinstance(block, LanceCollection):
        block.namespace_id = namespace_id  # its table stays where it is: the block records the place
    block._block_document_id = None  # saved as a new document, under the new name
    block.save(new_name)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.delete_block_document(client.read_block_document_by_name(name, kind.get_block_type_slug()).id)
    return {**moved, "moved": True}


def unowned_results(files: ResultFiles) -> list[tuple[str, str]]:
    """The results folders of ad-hoc and cluster-definition runs saved before namespaces: named by
    their results id alone, and their latest run names no trigger. (folder, results id) each."""
    return [(owner, str(record.get("results_id") or owner)) for owner in files.owners()
            if not is_owned(owner) and (record := files.latest_record(owner)) and not record.get("trigger_id")]


def adopt_results(files: ResultFiles, owner: str, results_id: str, namespace_id: str) -> dict[str, Any]:
    """Move one unowned results folder to the namespace's folder for its results id; a namespace
    that has results of that id already keeps them and the old folder stays (reported)."""
    to = results_owner(namespace_id, results_id)
    moved = files.move_owner(owner, to)
    return {"kind": "results", "id": owner, "from": owner, "to": to, "moved": moved,
            **({} if moved else {"why": "the namespace has results of that id already; the old folder is kept"})}
