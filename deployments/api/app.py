"""The seed's REST API: /v1/clusters/triggers, over the same lifecycle as the CLI.

Every call needs `Authorization: Bearer <key>` (401 without a known key) and `X-Namespace`
(400 without, 403 for a namespace the key may not use). A trigger of another namespace is
404, as if it did not exist. Contract errors are 422 naming the field, the value and what is
allowed; changes the contract forbids are 409.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncIterator, Literal

import httpx
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.exceptions import PrefectHTTPStatusError
from prefect.logging import get_logger
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect

from prefect_cluster_triggers.core.contract import (
    ClusterTrigger,
    CreateTriggerRequest,
    ExecutionStatus,
    TriggerStatus,
    TriggerType,
)
from prefect_cluster_triggers.core.errors import (
    AlreadyExists,
    ClusterTriggersError,
    Conflict,
    ContractError,
    NotFound,
    Problem,
)
from prefect_cluster_triggers.core.names import namespace_id_of
from prefect_cluster_triggers.core.settings import get_settings
from prefect_cluster_triggers.deployments.api.keys import ApiKey, KeyStore
from prefect_cluster_triggers.deployments.evaluator.service import Evaluator
from prefect_cluster_triggers.deployments.prefect_objects.automations import WAKE_PATH
from prefect_cluster_triggers.deployments.prefect_objects.client import shared_client
from prefect_cluster_triggers.deployments.prefect_objects.event_reads import Evaluation
from prefect_cluster_triggers.deployments.service import commands, idempotency, queries
from prefect_cluster_triggers.deployments.service.migrate import unowned
from prefect_cluster_triggers.deployments.service.queries import Execution, RunChanges

MAX_OFFSET = 1_000_000
"""Deepest page a listing or history may ask for (Prefect's own offsets overflow far beyond)."""
MAX_BODY_BYTES = 256 * 1024
"""Largest request body: a trigger with 100 collections and a long description is a few kilobytes."""


@asynccontextmanager
async def _evaluating(app: FastAPI) -> AsyncIterator[None]:
    """The evaluator of event and conditional triggers, and the Prefect client of requests, live as long as the API."""
    settings = get_settings()
    evaluator = Evaluator(settings.evaluator.wake_url or f"http://127.0.0.1:{settings.stack.api_port}")
    async with shared_client() as client:
        left = await unowned(client)
        if left:
            _logger.warning("%d collections or cluster definitions saved before namespaces belong to no namespace and "
                            "are read by no trigger: run `cluster-triggers migrate --namespace NAME`", len(left))
        await evaluator.start()
        app.state.evaluator, app.state.wakes = evaluator, set()
        try:
            yield
        finally:
            await evaluator.stop()


app = FastAPI(
    title="prefect-cluster-triggers",
    version="0.1.0",
    description="Cluster triggers: re-clustering on cron, interval, event and conditional triggers, run by Prefect.",
    lifespan=_evaluating,
)
_logger = get_logger("cluster_triggers.api")


@app.middleware("http")
async def _bounded_body(request: Request, call_next: Any) -> Any:
    """Refuse a body over MAX_BODY_BYTES before it is read whole, by its Content-Length or as it streams."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return _too_large()
    if declared is None and request.method in ("POST", "PATCH", "PUT"):
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _too_large()
        request._body = body  # read once here; the endpoint reads it from here
    return await call_next(request)


def _too_large() -> JSONResponse:
    return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)


@app.middleware("http")
async def _after_setup(request: Request, call_next: Any) -> Any:
    """Under `make run`, hold trigger requests until every setup step has finished, so none races it."""
    if request.url.path.startswith("/v1/") and not getattr(app.state, "setup_done", False):
        if get_settings().stack.hold_until_ready:
            from prefect_cluster_triggers.core.stack_file import ready_stack

            await asyncio.to_thread(ready_stack)
        app.state.setup_done = True
    return await call_next(request)
router = APIRouter(prefix="/v1/clusters/triggers", tags=["cluster triggers"])


class Caller(BaseModel):
    """Who is calling, and in which namespace."""

    key: ApiKey
    namespace_id: str


class _Error(ClusterTriggersError):
    """An answer of the HTTP layer itself (a missing key or header, a wake-up not from our automations)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def caller(
    authorization: Annotated[str | None, Header(description="`Bearer sk_...`")] = None,
    x_namespace: Annotated[str | None, Header(description="Namespace name or id (`ns_...`)")] = None,
) -> Caller:
    scheme, _, token = (authorization or "").partition(" ")
    key = KeyStore().authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        raise _Error(401, "missing or unknown API key: send `Authorization: Bearer sk_...`")
    if not x_namespace:
        raise _Error(400, "missing X-Namespace header: the namespace name or id to work in")
    namespace = namespace_id_of(x_namespace)
    if namespace not in key.namespace_ids:
        raise _Error(403, f"this API key may not use namespace {x_namespace!r}")
    return Caller(key=key, namespace_id=namespace)


Authorized = Annotated[Caller, Depends(caller)]


class ListTriggersRequest(BaseModel):
    model_config = {"extra": "forbid"}

    cluster_id: str | None = None
    trigger_type: TriggerType | None = None
    status: TriggerStatus | None = None
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(50, ge=1, le=1000)
    sort_by: Literal["created_at"] = "created_at"
    direction: Literal["asc", "desc"] = "desc"


class ListTriggersResponse(BaseModel):
    results: list[ClusterTrigger]
    total: int
    offset: int
    limit: int


class HistoryRequest(BaseModel):
    model_config = {"extra": "forbid"}

    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(50, ge=1, le=1000)
    status_filter: ExecutionStatus | None = None
    include_evaluations: bool = Field(False, description="Also the latest `limit` evaluations: why it did or did not fire.")


class HistoryResponse(BaseModel):
    trigger_id: str
    executions: list[Execution]
    total: int
    offset: int
    limit: int
    evaluations: list[Evaluation] | None = None


class UpdateTriggerRequest(BaseModel):
    """Only these may change; `trigger_type`, `cluster_id` and `execution_config` cannot (409)."""

    model_config = {"extra": "allow"}

    schedule_config: dict[str, Any] | None = None
    description: str | None = None
    status: Literal["active", "paused"] | None = None


RetryKey = Annotated[str | None, Header(
    alias="Idempotency-Key",
    description="Retry safely: the same key with the same request returns the first answer (never a second trigger "
    "or run); with another request, 409. Keys are kept 24 hours.",
)]


@router.post("", response_model=ClusterTrigger, summary="Create Cluster Trigger")
async def create(request: Annotated[CreateTriggerRequest, Body()], who: Authorized,
                 idempotency_key: RetryKey = None) -> ClusterTrigger:
    async def make(token: str | None) -> ClusterTrigger:
        trigger_id = f"trg_{token}" if token else None
        try:
            return await commands.create_trigger(request, namespace_id=who.namespace_id, trigger_id=trigger_id,
                                                  created_by=who.key.created_by, internal_id=who.key.key_id)
        except AlreadyExists:
            if trigger_id is None:
                raise
            return await queries.get_trigger(trigger_id, who.namespace_id)  # made by an earlier attempt

    if idempotency_key is None:
        return await make(None)
    asked = idempotency.fingerprint("POST", router.prefix, request.model_dump(mode="json"))
    return await idempotency.once(who.namespace_id, idempotency_key, asked, make, ClusterTrigger)


@router.post("/list", response_model=ListTriggersResponse, summary="List Cluster Triggers")
async def list_triggers(who: Authorized, query: Annotated[ListTriggersRequest, Body()] = ListTriggersRequest()) -> ListTriggersResponse:
    results, total = await queries.list_triggers(
        who.namespace_id, cluster_id=query.cluster_id, trigger_type=query.trigger_type, status=query.status,
        offset=query.offset, limit=query.limit, descending=query.direction == "desc",
    )
    return ListTriggersResponse(results=results, total=total, offset=query.offset, limit=query.limit)


@router.get("/{trigger_id}", response_model=ClusterTrigger, summary="Get Cluster Trigger")
async def get(trigger_id: str, who: Authorized) -> ClusterTrigger:
    return await queries.get_trigger(trigger_id, who.namespace_id)


@router.patch("/{trigger_id}", response_model=ClusterTrigger, summary="Update Cluster Trigger")
async def update(trigger_id: str, changes: Annotated[UpdateTriggerRequest, Body()], who: Authorized) -> ClusterTrigger:
    return await commands.update_trigger(trigger_id, changes.model_dump(exclude_unset=True), who.namespace_id)


@router.delete("/{trigger_id}", response_model=ClusterTrigger, summary="Delete Cluster Trigger (soft)")
async def delete(trigger_id: str, who: Authorized) -> ClusterTrigger:
    return await commands.delete_trigger(trigger_id, who.namespace_id)


@router.post("/{trigger_id}/pause", response_model=ClusterTrigger, summary="Pause Cluster Trigger")
async def pause(trigger_id: str, who: Authorized) -> ClusterTrigger:
    return await commands.pause_trigger(trigger_id, who.namespace_id)


@router.post("/{trigger_id}/resume", response_model=ClusterTrigger, summary="Resume Cluster Trigger")
async def resume(trigger_id: str, who: Authorized) -> ClusterTrigger:
    return await commands.resume_trigger(trigger_id, who.namespace_id)


@router.post("/{trigger_id}/history", response_model=HistoryResponse, summary="Cluster Trigger History")
async def history(trigger_id: str, who: Authorized,
                  query: Annotated[HistoryRequest, Body()] = HistoryRequest()) -> HistoryResponse:
    executions, total = await queries.trigger_history(
        trigger_id, who.namespace_id, offset=query.offset, limit=query.limit, status_filter=query.status_filter
    )
    found = (await queries.trigger_evaluations(trigger_id, who.namespace_id, limit=query.limit)
             if query.include_evaluations else None)
    return HistoryResponse(trigger_id=trigger_id, executions=executions, total=total, offset=query.offset,
                           limit=query.limit, evaluations=found)


@router.post("/{trigger_id}/execute", response_model=Execution, summary="Execute Cluster Trigger now")
async def execute(trigger_id: str, who: Authorized, idempotency_key: RetryKey = None) -> Execution:
    async def run(token: str | None) -> Execution:
        return await commands.execute_trigger(trigger_id, who.namespace_id, idempotency_key=token)

    if idempotency_key is None:
        return await run(None)
    asked = idempotency.fingerprint("POST", f"{router.prefix}/{trigger_id}/execute", None)
    return await idempotency.once(who.namespace_id, idempotency_key, asked, run, Execution)


@router.get("/{trigger_id}/executions/{job_id}/changes", response_model=RunChanges,
            summary="What changed in an execution")
async def changes(trigger_id: str, job_id: str, who: Authorized) -> RunChanges:
    """What changed in execution `job_id` (a `history` job_id) since the trigger's previous execution: documents
    that moved between clusters, and clusters born, split, merged or vanished. A first execution has
    `previous_run_id: null`, every cluster born. Another namespace's trigger or run is 404, as a missing one."""
    return await queries.run_changes(job_id, who.namespace_id, trigger_id=trigger_id)


app.include_router(router)


class WakeUp(BaseModel):
    """What a trigger's automation posts for each matching event."""

    trigger_id: str
    event: dict[str, Any]


@app.post(WAKE_PATH, status_code=202, include_in_schema=False)
async def wake(request: Request, authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
    """Called by Prefect's automations only (the secret is in their webhook block)."""
    evaluator: Evaluator = request.app.state.evaluator
    if not await evaluator.accepts(authorization):
        raise _Error(401, "wake-ups come from the triggers' Prefect automations only")
    try:
        raw = await request.body()
    except ClientDisconnect:  # Prefect gave up waiting (a busy API); the sweep counts the event from Prefect's feed
        _logger.info("a wake-up's sender left before its body was read; the next sweep counts its event")
        return {"status": "left"}
    try:
        body = WakeUp.model_validate_json(raw)
    except ValidationError as exc:
        _logger.warning("unreadable wake-up %r: %s", raw[:500], exc)
        raise _Error(422, f"unreadable wake-up: {exc}") from None
    task = asyncio.create_task(evaluator.wake(body.trigger_id, body.event))  # answer Prefect at once
    request.app.state.wakes.add(task)
    task.add_done_callback(request.app.state.wakes.discard)
    return {"status": "accepted"}


@app.exception_handler(_Error)
async def _error(_: Request, exc: _Error) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


@app.exception_handler(NotFound)
async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


@app.exception_handler(Conflict)
async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


@app.exception_handler(httpx.HTTPError)
@app.exception_handler(PrefectHTTPStatusError)
async def _prefect_failed(request: Request, exc: Exception) -> JSONResponse:
    """Prefect's answers stay inside: its refusal of what a caller sent is a 422 in our words, anything
    else a 503 to retry; neither names Prefect's internal address (it goes to our log)."""
    response = getattr(exc, "response", None)
    if isinstance(exc, httpx.HTTPStatusError) and response is not None and 400 <= response.status_code < 500:
        _logger.warning("Prefect refused %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"refused: {_prefect_detail(response)}"}, status_code=422)
    _logger.warning("Prefect failed on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "the orchestration server did not answer usefully; try again"}, status_code=503)


def _prefect_detail(response: httpx.Response) -> str:
    """What Prefect said was wrong, without its addresses: its `detail` text, cut to one line."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else "the request is not one the orchestration server can store"
    return text.splitlines()[0][:200] if text else text


@app.exception_handler(ContractError)
async def _contract(_: Request, exc: ContractError) -> JSONResponse:
    return _unprocessable(exc.problems)


@app.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's validation, in the contract's words: the body's field path without the `body` prefix."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        loc = loc[1:] if loc[:1] == ("body",) else loc
        problems.append(ContractError.from_validation_error_details([{**error, "loc": loc}]).problems[0])
    return _unprocessable(problems)


def _unprocessable(problems: list[Problem]) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": p.path, "msg": p.message} for p in problems], "message": "; ".join(map(str, problems))},
        status_code=422,
    )
