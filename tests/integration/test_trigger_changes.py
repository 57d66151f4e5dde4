"""Changes to one trigger at once from two processes, the REST API's and this one: each applies or is
refused with 409, and the trigger ends with its record, its Prefect deployment, its runs and (an event
trigger) its automation in agreement."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import httpx
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import StateType

from prefect_cluster_triggers.core.errors import Conflict, NotFound
from prefect_cluster_triggers.deployments.api.keys import KeyStore
from prefect_cluster_triggers.deployments.prefect_objects.automations import automation_name
from prefect_cluster_triggers.deployments.prefect_objects.status import in_states, of_deployment, trigger_status
from prefect_cluster_triggers.deployments.prefect_objects.translate import MANUAL_TAG, TriggerRecord
from prefect_cluster_triggers.deployments.service import commands
from tests.seed_examples import EVENT, INTERVAL

_NAMESPACE = "team-changes"
_REFUSALS = ("another change to trigger", "is deleted")  # the only 409s: the lock, or a trigger deleted first
_SWEEP = 2  # seconds between the session evaluator's sweeps


@dataclass(frozen=True)
class Kind:
    """A trigger type as the rounds change it: patches set `field` of its schedule_config."""

    example: str
    field: str
    first: int  # the field's value at creation; no patch asks for it

    def asked(self, k: int) -> int:
        return self.first // 6 + k


_INTERVAL = Kind(INTERVAL, "interval_seconds", 3600)
_EVENT = Kind(EVENT, "event_threshold", 120)
_ROUNDS = [_EVENT] + [_INTERVAL] * 5  # the event round keeps its trigger: its automation is kept too


@dataclass(frozen=True)
class Change:
    action: str  # patch, pause, resume, execute or delete
    value: int | None = None  # what a patch asks for


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


def _changes(kind: Kind, round_: int) -> list[Change]:
    """20 changes in a shuffled order; every other round deletes the trigger twice among them."""
    deletes = 2 if round_ % 2 else 0
    changes = [Change("patch", kind.asked(k)) for k in range(6)] + [Change("pause")] * 4 + [Change("resume")] * 4
    changes += [Change("execute")] * (6 - deletes) + [Change("delete")] * deletes
    random.Random(round_).shuffle(changes)
    return changes


async def _send(client: httpx.AsyncClient, trigger_id: str, kind: Kind, change: Change, *, here: bool) -> Answer:
    """The change through the REST API, or `here`: through this process's lifecycle, answered as the API would."""
    config = {**json.loads(kind.example)["schedule_config"], kind.field: change.value}
    if not here:
        path = f"/triggers/{trigger_id}"
        response = await {
            "patch": lambda: client.patch(path, json={"schedule_config": config}),
            "delete": lambda: client.delete(path),
        }.get(change.action, lambda: client.post(f"{path}/{change.action}"))()
        return Answer(response.status_code,
                      response.json() if response.status_code < 500 else {"detail": response.text})
    call = {
        "patch": lambda: commands.update_trigger(trigger_id, {"schedule_config": config}, _NAMESPACE),
        "pause": lambda: commands.pause_trigger(trigger_id, _NAMESPACE),
        "resume": lambda: commands.resume_trigger(trigger_id, _NAMESPACE),
        "execute": lambda: commands.execute_trigger(trigger_id, _NAMESPACE),
        "delete": lambda: commands.delete_trigger(trigger_id, _NAMESPACE),
    }[change.action]
    try:
        return Answer(200, (await call()).model_dump(mode="json"))
    except Conflict as exc:
        return Answer(409, {"detail": str(exc)})
    except NotFound as exc:
        return Answer(404, {"detail": str(exc)})
    except Exception as exc:  # what the API would answer with 500
        return Answer(500, {"detail": repr(exc)})


async def _check_agreement(client: httpx.AsyncClient, trigger_id: str, kind: Kind,
                           answered: list[tuple[Change, Answer]]) -> None:
    """The trigger as Prefect holds it agrees with its record and with what the answers said was applied."""
    applied = [change for change, answer in answered if answer.status == 200]
    async with get_client() as prefect:
        deployment = await prefect.read_deployment_by_name(f"cluster-collection/{trigger_id}")
        scheduled = await prefect.read_flow_runs(deployment_filter=of_deployment(deployment.id),
                                                 flow_run_filter=in_states(StateType.SCHEDULED))
        manual = await prefect.count_flow_runs(deployment_filter=of_deployment(deployment.id),
                                               flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[MANUAL_TAG])))
    record = TriggerRecord.model_validate(deployment.parameters["trigger"])
    value = getattr(record.request.schedule_config, kind.field)
    status = trigger_status(deployment.paused, deployment.tags)
    shown = (await client.get(f"/triggers/{trigger_id}")).json()

    patched = [change.value for change in applied if change.action == "patch"]
    assert value in patched if patched else value == kind.first
    assert (status == "disabled") == any(change.action == "delete" for change in applied)
    if status == "disabled":
        assert deployment.paused
    else:
        assert record.request.status == ("paused" if deployment.paused else "active")
    if deployment.paused:
        assert [run.name for run in scheduled if MANUAL_TAG not in run.tags] == []
    assert manual == sum(change.action == "execute" for change in applied)
    assert (shown["status"], shown["schedule_config"][kind.field]) == (status, value)
    if kind is _INTERVAL:
        assert [(s.schedule.interval, s.active) for s in deployment.schedules] == [(timedelta(seconds=value), True)]
    else:
        assert deployment.schedules == []
        enabled = [] if status == "disabled" else [status == "active"]
        assert await _automations_reach(trigger_id, enabled) == enabled


async def _automations_reach(trigger_id: str, enabled: list[bool]) -> list[bool]:
    """Whether each of the trigger's automations is enabled, as soon as that is `enabled` or after three sweeps.

    The evaluator's sweep writes automations too, from a read made at its start: a change
    that lands meanwhile is undone until its next sweep.
    """
    for _ in range(3):
        async with get_client() as prefect:
            found = [a.enabled for a in await prefect.read_automations_by_name(automation_name(trigger_id))]
        if found == enabled:
            break
        await asyncio.sleep(_SWEEP)
    return found


def test_twenty_changes_at_once_to_one_trigger_apply_one_at_a_time_or_get_409(api: str) -> None:
    key, _ = KeyStore().create([_NAMESPACE], created_by=f"{_NAMESPACE}-owner")
    headers = {"Authorization": f"Bearer {key}", "X-Namespace": _NAMESPACE}

    async def rounds() -> None:
        async with httpx.AsyncClient(base_url=f"{api}/v1/clusters", headers=headers, timeout=60) as client:
            for round_, kind in enumerate(_ROUNDS):
                body = json.loads(kind.example)
                body["schedule_config"][kind.field] = kind.first
                trigger_id = (await client.post("/triggers", json=body)).json()["trigger_id"]
                changes = _changes(kind, round_)
                answers = await asyncio.gather(*(_send(client, trigger_id, kind, change, here=i % 3 == 0)
                                                 for i, change in enumerate(changes)))
                answered = list(zip(changes, answers))
                unexpected = [f"{change}: {a.status} {a.body}" for change, a in answered
                              if a.status not in (200, 409)
                              or a.status == 409 and not any(w in a.body["detail"] for w in _REFUSALS)]
                assert unexpected == [], f"round {round_}"
                assert any(a.status == 200 for a in answers)  # the first to take the lock applies
                for change, answer in answered:
                    if change.action == "patch" and answer.status == 200:
                        assert answer.body["schedule_config"][kind.field] == change.value
                await _check_agreement(client, trigger_id, kind, answered)
                print(f"round {round_}:", dict(Counter(f"{c.action} {a.status}" for c, a in answered)))

    asyncio.run(rounds())
