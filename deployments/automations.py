"""An event trigger's Prefect automation: it wakes the trigger up the moment a matching event arrives.

Automations react to an event in well under a second, which is what they are used for here;
counting and the cooldown are not left to them (see `deployments.firing`). Each event trigger
has one automation, named after it, that calls the evaluator's wake-up webhook with the
event (id, time, payload) for every matching event of its collection. It is enabled exactly
when the trigger is active and deleted with the trigger. The webhook is one Prefect
`Webhook` block, written by the evaluator when it starts, with its address and secret.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator
from uuid import UUID

from prefect.blocks.webhook import Webhook
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from pydantic import SecretStr
from prefect.types import SecretDict

from prefect_cluster_triggers.deployments.contract import EventScheduleConfig, TriggerStatus
from prefect_cluster_triggers.deployments.firing import EVENT_NAMES, collection_resource
from prefect_cluster_triggers.deployments.translate import TriggerRecord

WEBHOOK_BLOCK = "cluster-triggers-wake"
WAKE_PATH = "/internal/v1/wake"
# The webhook body: the trigger, and the event as the evaluator counts it. Jinja, rendered by Prefect.
_PAYLOAD = (
    '{"trigger_id": "%s", "event": {"id": "{{ event.id }}", "event": "{{ event.event }}", '
    '"occurred": "{{ event.occurred }}", "payload": {{ event.payload | tojson }}}}'
)


def automation_name(trigger_id: str) -> str:
    return f"cluster-trigger/{trigger_id}"


async def save_wake_webhook(base_url: str, token: str) -> UUID:
    """Point the wake-up webhook at this evaluator (its API's address); every trigger's automation calls it."""
    block = Webhook(url=SecretStr(base_url.rstrip("/") + WAKE_PATH), headers=SecretDict({"Authorization": f"Bearer {token}"}), method="POST")
    return await block.save(WEBHOOK_BLOCK, overwrite=True)


async def wake_webhook_id(client: PrefectClient) -> UUID | None:
    """The webhook block's id; None until an evaluator has started once."""
    try:
        document = await client.read_block_document_by_name(WEBHOOK_BLOCK, block_type_slug="webhook")
    except ObjectNotFound:
        return None
    return document.id


async def sync_automation(
    client: PrefectClient,
    record: TriggerRecord,
    status: TriggerStatus,
    webhook_id: UUID | None,
    existing: list[Any] | None = None,
) -> None:
    """Make the trigger's automation what its type and status say: none, enabled, or disabled.

    Args:
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
    wanted = _automation(record.trigger_id, config, webhook_id, enabled=status == TriggerStatus.active)
    if not existing:
        await client.create_automation(wanted)
    elif _differs(existing[0], wanted):
        with _gone_is_fine():
            await client.update_automation(existing[0].id, wanted)


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


def _automation(trigger_id: str, config: EventScheduleConfig, webhook_id: UUID, *, enabled: bool) -> AutomationCore:
    return AutomationCore(
        name=automation_name(trigger_id),
        description=(
            f"Wakes cluster trigger {trigger_id} on every {config.event_type} event of collection "
            f"{config.collection_id}; the trigger counts the documents and decides whether to run."
        ),
        enabled=enabled,
        trigger=EventTrigger(
            expect={EVENT_NAMES[config.event_type]},
            match={"prefect.resource.id": collection_resource(config.collection_id)},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[CallWebhook(block_document_id=webhook_id, payload=_PAYLOAD % trigger_id)],
    )


def _differs(existing: Any, wanted: AutomationCore) -> bool:
    fields = {"description", "enabled", "trigger", "actions"}
    return existing.model_dump(mode="json", include=fields) != wanted.model_dump(mode="json", include=fields)
