"""Conditional triggers: measure a trigger's metric once per check slot, fire when it crossed.

The rules are `core.checks` (pure, `now` passed in): when a check is due, what it decides, and
the firing's key (its slot), so two evaluators checking the same slot fire it once. The
measurement itself is `condition_check.measure`, run in a thread; a check that fails is
recorded as a failed check, never as a failed clustering.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events import emit_event
from prefect.logging import get_logger

from prefect_cluster_triggers.blocks.result_store import ResultStore
from prefect_cluster_triggers.core import checks
from prefect_cluster_triggers.core.contract import ConditionalScheduleConfig
from prefect_cluster_triggers.core.errors import ClusterTriggersError
from prefect_cluster_triggers.core.firing import Decision
from prefect_cluster_triggers.deployments.evaluator.condition_check import measure
from prefect_cluster_triggers.deployments.evaluator.shown import ShownState
from prefect_cluster_triggers.deployments.prefect_objects.client import retry_lost_races
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import MEASURED, Measurement, last_measurement
from prefect_cluster_triggers.deployments.prefect_objects.status import in_states, of_deployment
from prefect_cluster_triggers.deployments.prefect_objects.translate import CONDITION_TAG, TriggerRecord
from prefect_cluster_triggers.deployments.prefect_objects.trigger_events import decision_resource, trigger_resource
from prefect_cluster_triggers.deployments.prefect_objects.trigger_records import EvaluatorState

_logger = get_logger("cluster_triggers.evaluator")
_BUSY = (StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED)


class ConditionTriggers:
    """Checks conditional triggers when their check slot comes round."""

    def __init__(self, shown: ShownState) -> None:
        self._shown = shown
        self._checked: dict[str, datetime | None] = {}
        self.due: dict[str, datetime] = {}  # trigger -> when its next check slot begins: a sweep visits it then

    async def check(self, client: PrefectClient, deployment: Any, record: TriggerRecord,
                    config: ConditionalScheduleConfig, store: ResultStore) -> None:
        """Measure the trigger's metric if its slot has not been checked yet, and fire when it crossed.
        `store`: the server's result store (`default_result_store_with`), read once for a sweep's checks."""
        trigger_id = record.trigger_id
        if trigger_id not in self._checked:  # first sight since start: continue from the last recorded check
            last = await last_measurement(client, trigger_id)
            self._checked[trigger_id] = last.checked_at if last else None
        now = datetime.now(timezone.utc)
        interval = config.check_interval_seconds
        if not checks.is_due(self._checked[trigger_id], now, interval):
            self.due[trigger_id] = checks.next_slot(self._checked[trigger_id], interval)
            return
        request = record.request
        collections = list(request.execution_config.collection_ids) if request.execution_config else None
        value, error = None, None
        try:
            value = await asyncio.to_thread(measure, store, trigger_id, record.namespace_id, config.metric, collections,
                                            request.cluster_id)
        except ClusterTriggersError as exc:
            error = str(exc)
        except Exception as exc:  # a broken check is recorded as one, never stops the evaluator
            _logger.exception("check of trigger %s failed", trigger_id)
            error = f"{type(exc).__name__}: {exc}"
        decided_at = datetime.now(timezone.utc)
        decision = checks.decide(value, error, config.threshold, busy=False)
        if decision == Decision.fired and await _busy(client, deployment.id):  # read only when it would fire
            decision = checks.decide(value, error, config.threshold, busy=True)
        message = checks.explain(config.metric, value, error, config.threshold, decision)
        measurement = Measurement(metric=config.metric, value=value, threshold=config.threshold, message=message,
                                  fired=decision == Decision.fired, decision=decision, error=error, checked_at=now)
        if decision == Decision.fired:  # before the measurement that says the slot was checked
            slot = checks.check_slot(now, interval)
            await retry_lost_races(lambda: client.create_flow_run_from_deployment(  # keyed: a retry makes it once
                deployment.id, parameters={"firing": measurement.model_dump(mode="json")}, tags=[CONDITION_TAG],
                idempotency_key=checks.firing_key(trigger_id, slot),
            ))
        emit_event(event=MEASURED, resource={"prefect.resource.id": trigger_resource(trigger_id),
                                             "prefect.resource.name": trigger_id},
                   related=[decision_resource(decision.value, message)],
                   occurred=decided_at, payload=measurement.model_dump(mode="json"))
        self._checked[trigger_id] = now  # only now: a check cut short is made again in this slot
        self.due[trigger_id] = checks.next_slot(now, interval)
        self._shown.show(trigger_id, EvaluatorState(
            last_measurement=value, last_condition_check_at=now, last_check_error=error
        ))


async def _busy(client: PrefectClient, deployment_id: Any) -> bool:
    """A run of the trigger is queued or running: a check does not pile another one on it."""
    return await client.count_flow_runs(deployment_filter=of_deployment(deployment_id),
                                        flow_run_filter=in_states(*_BUSY)) > 0
