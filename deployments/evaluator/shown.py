"""What a trigger shows between runs (counter, cooldown, last check), written off the firing path.

The evaluator decides often; `ls` and `get` read the trigger's STATE record
(`prefect_objects.trigger_records`). One writer per trigger writes the latest state until it is
written, so a burst of wake-ups costs a write or two instead of one each; at most `_AT_ONCE` writes are
in flight, so the writes of a sweep's hundreds of checks never take the connections a firing waits for.
"""

from __future__ import annotations

import asyncio

from prefect.logging import get_logger

from prefect_cluster_triggers.deployments.prefect_objects import records, trigger_records
from prefect_cluster_triggers.deployments.prefect_objects.client import prefect_client
from prefect_cluster_triggers.deployments.prefect_objects.trigger_records import EvaluatorState

_logger = get_logger("cluster_triggers.evaluator")
_AT_ONCE = 2  # state writes in flight, of the shared client's `CONNECTIONS`


class ShownState:
    """The latest state of each trigger, written to its STATE record in the background."""

    def __init__(self) -> None:
        self._written: dict[str, EvaluatorState] = {}
        self._latest: dict[str, EvaluatorState] = {}
        self._writers: dict[str, asyncio.Task] = {}
        self._at_once = asyncio.Semaphore(_AT_ONCE)

    def show(self, trigger_id: str, state: EvaluatorState) -> None:
        """Make `state` what the trigger shows, soon."""
        self._latest[trigger_id] = state
        if trigger_id not in self._writers:
            self._writers[trigger_id] = asyncio.create_task(self._write(trigger_id))

    def pending(self, trigger_ids: list[str]) -> dict[str, EvaluatorState]:
        """The states of `trigger_ids` decided here and not yet written: newer than their records."""
        return {t: self._latest[t] for t in trigger_ids if t in self._latest and self._latest[t] != self._written.get(t)}

    async def _write(self, trigger_id: str) -> None:
        try:
            async with prefect_client() as client:
                while (state := self._latest[trigger_id]) != self._written.get(trigger_id):
                    async with self._at_once:
                        await records.save(client, trigger_records.record_name(trigger_records.STATE, trigger_id),
                                             state)
                    self._written[trigger_id] = state
        except Exception:  # shown at the next decision instead
            _logger.exception("could not write the state record of trigger %s", trigger_id)
        finally:
            del self._writers[trigger_id]
