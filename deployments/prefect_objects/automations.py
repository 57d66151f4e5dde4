"""An event trigger's Prefect automation: it wakes the trigger up the moment a matching event arrives.

Automations react to an event in well under a second, which is what they are used for here;
counting and the cooldown are not left to them (see `deployments.firing`). Each event trigger
has one automation, named after it, that calls the evaluator's wake-up webhook with the
event (id, time, payload) for every matching event of its collection. It is enabled exactly
when the trigger is active and deleted with the trigger. The webhook is one Prefect
`Webhook` block with its address and secret: the first evaluator to start writes it, every
replica takes its secret from it, and the replica that sweeps points it at its own address
(or the address of a load balancer in front of all replicas: `CLUSTER_TRIGGERS_WAKE_URL`).

The automation is owned by the trigger's deployment, so the deployment's page lists it under
"Triggers". `prefect deploy` deletes the automations a deployment owns; the evaluator's next
sweep makes it again, and no event is lost meanwhile (counting reads the events, not the wakes).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator, NamedTuple
from uuid import UUID

from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.types import SecretDict
from pydantic import SecretStr

from prefect_cluster_triggers.core.contract import EventScheduleConfig, TriggerStatus
from prefect_cluster_triggers.core.firing import EVENT_NAMES, collection_resource
from prefect_cluster_triggers.deployments.prefect_objects.client import PAGE
from prefect_cluster_triggers.deployments.prefect_objects.translate import TriggerRecord

WEBHOOK_BLOCK = "cluster-triggers-wake"
WAKE_PATH = "/internal/v1/wake"
# The webhook body: the trigger, and the event as the evaluator counts it. Jinja, rendered by Prefect.
_PAYLOAD = (
    '{"trigger_id": "%s", "event": {"id": "{{ event.id }}", "event": "{{ event.event }}", '
    '"occurred": "{{ event.occurred }}", "payload": {{ event.payload | tojson }}}}'
)


def automation_name(trigger_id: str) -> str:
    """The name of the trigger's automation (one per event trigger)."""
    return f"cluster-trigger/{trigger_id}"


async def save_wake_webhook(base_url: str, token: str) -> UUID:
    """Point the wake-up webhook at this evaluator (its API's address); every trigger's automation calls it."""
    block = Webhook(url=SecretStr(base_url.rstrip("/") + WAKE_PATH), headers=SecretDict({"Authorization": f"Bearer {token}"}), method="POST")
    return await block.save(WEBHOOK_BLOCK, overwrite=True)


class WakeWebhook(NamedTuple):
    """Where the automations send wake-ups, and the secret they send."""

    url: str
    token: str


async def read_wake_webhook() -> WakeWebhook | None:
    """The wake-up webhook's address and secret; None until an evaluator has started once."""
    try:
        block = await Webhook.aload(WEBHOOK_BLOCK)
    except ValueError:  # no such block yet
        return None
    scheme, _, token = block.headers.get_secret_value().get("Authorization", "").partition(" ")
    url = block.url.get_secret_value().removesuffix(WAKE_PATH)
    return WakeWebhook(url, token) if scheme == "Bearer" and token else None


async def wake_webhook_id(client: PrefectClient) -> UUID | None:
    """The webhook block's id; None until an evaluator has started once."""
    try:
        document = await client.read_block_document_by_name(WEBHOOK_BLOCK, block_type_slug="webhook")
    except ObjectNotFound:
        return None
    return document.id


async def automations_by_name(client: PrefectClient) -> dict[str, list[Any]]:
    """Every automation on the server by name, read page by page: Prefect answers at most a page
    (`PAGE`) to a read without a limit, and an automation missing from the answer would be made again."""
    found: dict[UUID, Any] = {}
    offset = 0
    while page := await client.read_automations(limit=PAGE, offset=offset):
        offset += len(page)
        found.update((automation.id, automation) for automation in page)  # one moved by a concurrent change: once
    named: dict[str, list[Any]] = {}
    for automation in found.values():
        named.setdefault(automation.name, []).append(automation)
    return named


async def sync_automation(
    client: PrefectClient,
    record: TriggerRecord,
    deployment_id: UUID,
    status: TriggerStatus,
    webhook_id: UUID | None,
    existing: list[Any] | None = None,
) -> None:
    """Make the trigger's automation what its type and status say: none, enabled, or disabled.

    A changed automation is made again rather than updated: Prefect sets an automation's owner
    only when it is created. Two callers racing may both make one; the next call keeps the first.

    Args:
        deployment_id: the trigger's deployment, which owns the automation.
        webhook_id: the wake-up webhook; None to keep the one the automation has (or wait
            for an evaluator to create the automation).
        existing: the trigger's automations when the caller has read them already.
    """
    if existing is None:
        existing = await client.read_automations_by_name(automation_name(record.trigger_id))
    config = record.request.schedule_config
    if not isinstance(config, EventScheduleConfig) or status == TriggerStatus.disabled:
        for automation in existing:
            with _gone_is_fine():
                await client.delete_automation(automation.id)
        return
    if webhook_id is None:
        if existing:
            webhook_id = existing[0].actions[0].block_document_id
        else:
            return  # no evaluator yet: it creates the automation when it starts
    wanted = _automation(record, config, deployment_id, webhook_id, enabled=status == TriggerStatus.active)
    kept = existing[0] if existing and not _differs(existing[0], wanted) else None
    for automation in existing:
        if automation is not kept:
            with _gone_is_fine():
                await client.delete_automation(automation.id)
    if kept is None:
        await client.create_automation(wanted)


@contextmanager
def _gone_is_fine() -> Iterator[None]:
    """An automation that a concurrent evaluator or lifecycle call deleted first: its delete won.

    Prefect's client raises on the 404 before its own `delete_automation` can ignore it, and
    the REST API would answer 503 for what is the outcome the caller wanted.
    """
    try:
        yield
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 404:
            raise


def _automation(record: TriggerRecord, config: EventScheduleConfig, deployment_id: UUID, webhook_id: UUID, *,
                enabled: bool) -> AutomationCore:
    trigger_id = record.trigger_id
    return AutomationCore(
        name=automation_name(trigger_id),
        description=(
            f"Wakes cluster trigger {trigger_id} on every {config.event_type} event of collection "
            f"{config.collection_id}; the trigger counts the documents and decides whether to run "
            f"(its state: the Description tab of deployment {deployment_id})."
        ),
        enabled=enabled,
        trigger=EventTrigger(
            expect={EVENT_NAMES[config.event_type]},
            match={"prefect.resource.id": collection_resource(record.namespace_id, config.collection_id)},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=webhook_id, payload=_PAYLOAD % trigger_id)],
        owner_resource=f"prefect.deployment.{deployment_id}",
    )


def _differs(existing: Any, wanted: AutomationCore) -> bool:
    fields = {"description", "enabled", "trigger", "actions"}
    return existing.model_dump(mode="json", include=fields) != wanted.model_dump(mode="json", include=fields)
