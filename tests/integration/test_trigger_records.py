"""Where the plugin keeps its small records: anonymous block documents, never the user's Prefect Variables.

Prefect reads every Variable of the server each time it creates a run from a deployment, so
records kept there would slow every firing as triggers are added; records an earlier version
kept there are moved, and keep working (a retry with an Idempotency-Key used before the move
still gets its first answer).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentCreate
from pydantic import BaseModel

from prefect_cluster_triggers.core.contract import validate_request
from prefect_cluster_triggers.deployments.prefect_objects import cursors, records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.records import RecordBlock
from prefect_cluster_triggers.deployments.service import commands, idempotency, queries, quota

KMEANS = {"algorithm": "kmeans", "n_clusters": 3}


class Answer(BaseModel):
    trigger_id: str


async def _our_variables(client: Any) -> list[str]:
    response = await client.request("POST", "/variables/filter",
                                    json={"variables": {"name": {"like_": f"{records.PREFIX}%"}}, "limit": 200})
    return [v["name"] for v in response.json()]


def test_a_trigger_and_its_quota_slot_leave_the_users_variables_alone(prefect_api: str) -> None:
    request = validate_request({"trigger_type": "event", "execution_config": {"collection_ids": ["c"], "config": KMEANS},
                                "schedule_config": {"event_type": "documents_added", "event_threshold": 5,
                                                    "collection_id": "c"}})
    created = queries.run_sync(commands.create_trigger(request, trigger_id="trg_records", namespace_id="tenant-records"))
    assert created.status == "active"

    async def look() -> tuple[list[str], dict[str, Any]]:
        async with get_client() as client:
            return (await _our_variables(client),
                    await records.read(client, [trigger_records.record_name(trigger_records.RUNS, "trg_records")]))

    variables, runs = queries.run_sync(look())
    assert variables == []
    assert runs[trigger_records.record_name(trigger_records.RUNS, "trg_records")]["execution_count"] == 0


def test_records_an_earlier_version_kept_in_variables_are_moved_and_still_answer(prefect_api: str) -> None:
    asked = idempotency.fingerprint("POST", "/v1/clusters/triggers", {"trigger_type": "cron"})
    key_name = idempotency.key_record_name("ns_0123456789abcdef", "retry-after-upgrade")
    newer = trigger_records.record_name(trigger_records.STATE, "trg_moved_newer")
    older = trigger_records.record_name(trigger_records.STATE, "trg_moved")

    async def scenario() -> tuple[Answer, dict[str, Any], list[str], int]:
        async with get_client() as client:
            for name, value in [(key_name, {"fingerprint": asked, "token": "t0", "answer": {"trigger_id": "trg_first"}}),
                                (older, {"event_counter": 4}), (newer, {"event_counter": 1}),
                                ("cluster-trigger-slot-ns_0123456789abcdef-0", {"trigger_id": "trg_moved"})]:
                await client.request("POST", "/variables/", json={"name": name, "value": value})
            await records.save_value(client, newer, {"event_counter": 9})  # written since by the new version
            moved = sum(await asyncio.gather(records.move_from_variables(client), records.move_from_variables(client)))

            async def work(_: str) -> Answer:
                raise AssertionError("a retry of a request answered before the move must not be worked again")

            answer = await idempotency.once("ns_0123456789abcdef", "retry-after-upgrade", asked, work, Answer)
            return answer, await records.read(client, [older, newer]), await _our_variables(client), moved

    answer, states, left, moved = queries.run_sync(scenario())
    assert answer == Answer(trigger_id="trg_first")
    assert states == {older: {"event_counter": 4}, newer: {"event_counter": 9}}
    assert left == []
    assert moved == 2  # the key and the older state, each once however many movers ran; the slot is made again


@pytest.mark.parametrize("value", [7, "text", {"nested": [1, 2.5, None]}, None])
def test_a_record_reads_back_as_saved(prefect_api: str, value: Any) -> None:
    async def round_trip() -> Any:
        async with get_client() as client:
            await records.save_value(client, f"{records.PREFIX}-test-round-trip", "first")
            await records.save_value(client, f"{records.PREFIX}-test-round-trip", value)
            return await records.read(client, [f"{records.PREFIX}-test-round-trip"])

    assert queries.run_sync(round_trip()) == {f"{records.PREFIX}-test-round-trip": value}


def test_records_stay_out_of_the_users_event_feed_and_blocks_page(prefect_api: str) -> None:
    """A record is written at every condition check and event evaluation: none of its writes is a Prefect
    event (stored, shown in the feed, matched against every automation) or a block on the Blocks page."""
    name = f"{records.PREFIX}-test-quiet"

    async def scenario() -> tuple[list[str], list[str], Any, Any]:
        async with get_client() as client:
            since = datetime.now(timezone.utc) - timedelta(seconds=1)
            created = await records.create(client, name, "first")
            await records.save_value(client, name, "second")
            kept = await records.read(client, [name])
            loaded = (await RecordBlock.aload(name, client=client)).value
            listed = [d.name for d in await client.read_block_documents_by_type(RecordBlock.get_block_type_slug())]
            assert await records.delete(client, created.id)
            await asyncio.sleep(3)  # Prefect's event persister flushes every 0.5 s here
            events = await client.request("POST", "/events/filter", json={
                "filter": {"occurred": {"since": since.isoformat()}, "event": {"prefix": ["prefect.block-document."]},
                           "any_resource": {"id": [f"prefect.block-document.{created.id}"]}}, "limit": 50})
            return [e["event"] for e in events.json()["events"]], listed, kept, loaded

    events, listed, kept, loaded = queries.run_sync(scenario())
    assert kept == {name: "second"} and loaded == "second"
    assert name not in listed
    assert events == []


def test_named_records_of_an_earlier_version_are_made_anonymous_with_their_values(prefect_api: str) -> None:
    """Run figures, state and cursor hints are made again as anonymous documents (no event per write), by
    two replicas at once each once; a quota slot, a lock, keeps its named document."""
    derived = {trigger_records.record_name(trigger_records.RUNS, "trg_named"): {"runs": 3},
               trigger_records.record_name(trigger_records.STATE, "trg_named"): {"state": "kept"},
               cursors.cursor_name("trg_named"): 7}
    slot = f"{quota.SLOT_PREFIX}tenant-named-0"
    prefixes = [trigger_records.record_name(kind, "") for kind in (trigger_records.RUNS, trigger_records.STATE)]

    async def scenario() -> tuple[int, dict[str, bool], dict[str, Any]]:
        async with get_client() as client:
            schema_id, type_id = await records.registered(client, RecordBlock)
            for name, value in {**derived, slot: {"trigger_id": "trg_named"}}.items():
                await client.create_block_document(BlockDocumentCreate(
                    name=name, block_schema_id=schema_id, block_type_id=type_id, data={"value": value}, is_anonymous=False))
            made = sum(await asyncio.gather(*(records.make_anonymous(client, [*prefixes, cursors.cursor_name("")])
                                              for _ in range(2))))
            anonymous = {name: (await client.read_block_document_by_name(name, RecordBlock.get_block_type_slug())).is_anonymous
                         for name in [*derived, slot]}
            return made, anonymous, await records.read(client, list(derived))

    made, anonymous, values = queries.run_sync(scenario())
    assert made == 3 and values == derived
    assert anonymous == {**{name: True for name in derived}, slot: False}


def test_claims_of_one_namespace_in_one_process_take_distinct_slots_without_losing_races(
        prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty creates' claims at once in one namespace: each gets its own slot at its first try;
    side by side they picked the same free slots and lost races to one another."""
    tries: list[str] = []
    create = records.create

    async def counted(client: Any, name: str, value: Any, **options: Any) -> Any:
        tries.append(name)
        return await create(client, name, value, **options)

    monkeypatch.setattr(records, "create", counted)

    async def claims() -> list[quota.Claim]:
        async with get_client() as client:
            return await asyncio.gather(*(quota.claim(client, "tenant-turns", f"trg_turn_{i}") for i in range(20)))

    taken = asyncio.run(claims())
    assert len({claim.name for claim in taken}) == 20
    assert len(tries) == 20
