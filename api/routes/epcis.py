"""GS1 EPCIS 2.0 over REST: capture documents (mapped to ledger actions, anchored by Event Hash ID),
capture jobs, event queries and export, limited to what the caller's organisation may see."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session, col

from api.edge.auth import Permit, Principal, RuntimeDep
from api.edge.problems import Problem
from api.edge.rules import PROBLEM_BASE, rule_problem
from api.epcis.capture import CaptureMapper, Mapped, Refused, assemble, problem_entry, revert_problem
from api.epcis.query import EventQuery, read_token, run
from api.epcis.store import already_captured, parse_time
from api.models.epcis import CaptureJob, EpcisEvent
from api.models.outbox import TERMINAL, Operation, OperationStatus
from api.routes.common import Write, write_dependency
from api.routes.openapi import problem_response
from api.runtime import Runtime
from api.write import outbox
from node.epcis import events as ev
from node.epcis.model import problems, validate_document

JSON_TYPES = frozenset({"application/json", "application/ld+json", "application/problem+json"})


def json_acceptable(request: Request) -> None:
    """406 when the client's Accept header rules out every JSON form (this binding serves JSON-LD
    only): answering JSON to `Accept: application/xml` would hand an XML client a body it cannot
    read, with a 200."""
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((p.split("=", 1)[1] for p in params if p.replace(" ", "").startswith("q=")), "1")
        try:
            if float(q) <= 0:
                continue
        except ValueError:
            continue
        media = media.lower()
        if media in JSON_TYPES or media in ("*/*", "application/*"):
            return
    raise Problem(
        406,
        "Not Acceptable",
        type=PROBLEM_BASE + "not-acceptable",
        detail=f"this EPCIS binding answers {', '.join(sorted(JSON_TYPES))}; Accept was {accept[:200]!r}",
        accept=accept[:200],
    )


router = APIRouter(
    prefix="/epcis",
    tags=["EPCIS 2.0"],
    dependencies=[Depends(json_acceptable)],
    responses={406: problem_response("The Accept header rules out JSON and JSON-LD, the forms served")},
)
EPCIS_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}
# The query parameters this server implements (EPCIS 2.0 REST binding, section 12). Any other one is
# a QueryParameterException: silently ignoring `EQ_readPoint` would hand back unfiltered events.
QUERY_PARAMETERS = frozenset(
    {
        "eventType",
        "EQ_bizStep",
        "EQ_disposition",
        "EQ_bizLocation",
        "MATCH_epc",
        "MATCH_anyEPC",
        "GE_eventTime",
        "LT_eventTime",
        "perPage",
        "nextPageToken",
    }
)
CONTROL_PARAMETERS = frozenset({"wait", "timeout"})
MEDIA_TYPES = ("application/json", "application/ld+json")

ErrorBehaviour = Annotated[
    Literal["rollback", "proceed"],
    Header(
        alias="GS1-Capture-Error-Behaviour",
        description="rollback (default): any refused event refuses the document; proceed: apply the rest",
    ),
]


# ---------------------------------------------------------------------- capture


def _document(raw: bytes, content_type: str) -> dict[str, Any]:
    if content_type.split(";")[0].strip().lower() not in MEDIA_TYPES:
        raise Problem(
            415,
            "Unsupported media type",
            type=PROBLEM_BASE + "unsupported-media-type",
            detail="send the EPCIS document as application/json or application/ld+json",
        )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise rule_problem(400, "invalid-json", f"the body is not JSON: {exc}") from None
    try:
        validate_document(data)
    except ValidationError as exc:
        raise Problem(
            422,
            "Invalid EPCIS document",
            type=PROBLEM_BASE + "invalid-epcis-document",
            detail="the document does not conform to EPCIS 2.0",
            errors=problems(exc),
        ) from None
    if data.get("type") != "EPCISDocument":
        raise rule_problem(422, "invalid-epcis-document", "capture takes an EPCISDocument", field="type")
    assert isinstance(data, dict)
    return data


def _map_all(
    runtime: Runtime, principal: Principal, document: dict[str, Any]
) -> tuple[list[Mapped], list[dict[str, Any]]]:
    """Every event mapped or refused, then the survivors simulated in order on the chain; an event
    whose action would revert is refused with the contract's error and the rest simulated again."""
    mapper = CaptureMapper(runtime, principal, document.get("@context"))
    mapped: list[Mapped] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    mapper.scan(document["epcisBody"]["eventList"])
    for position, event in enumerate(document["epcisBody"]["eventList"]):
        record = mapper.record(position, event)
        if record.hash_id in seen:
            problem = rule_problem(
                409,
                "duplicate-event",
                f"the same event as eventList[{seen[record.hash_id]}]",
                field=f"epcisBody.eventList[{position}]",
            )
            errors.append(problem_entry(problem, record))
            continue
        seen[record.hash_id] = position
        try:
            mapped.append(mapper.apply(record, event))
        except Refused as refused:
            errors.append(problem_entry(refused.problem, record))
    with Session(runtime.engine) as session:
        captured = already_captured(session, [m.record.hash_id for m in mapped])
        session.commit()
    for m in [m for m in mapped if m.record.hash_id in captured]:
        problem = rule_problem(
            409,
            "duplicate-event",
            f"captured before (operation {captured[m.record.hash_id]})",
            field=f"epcisBody.eventList[{m.record.position}]",
        )
        errors.append(problem_entry(problem, m.record))
        mapped.remove(m)
    _simulate(runtime, principal, mapped, errors)
    errors.sort(key=lambda e: int(e["event"]))
    return mapped, errors


def _simulate(
    runtime: Runtime, principal: Principal, mapped: list[Mapped], errors: list[dict[str, Any]]
) -> None:
    with Session(runtime.engine) as session:
        signer = outbox.signer_for(session, principal.org_id)
        busy = outbox.has_in_flight(session, principal.org_id if principal.org_id is not None else -1)
    if signer is None or busy:
        return  # accept() refuses without a key; with work in flight the chain judges when it comes
    while mapped:
        plan = assemble(runtime, mapped)
        try:
            outbox.simulate_sequence(runtime, plan, signer.address)
            return
        except outbox.StepRevert as failed:
            index = plan.steps[failed.index].event
            if index is None:  # anchorEvents itself: refuses only a key the chain does not accept
                raise revert_problem(plan, failed.revert, 0) from None
            culprit = mapped.pop(index)
            errors.append(
                problem_entry(revert_problem(plan, failed.revert, culprit.record.position), culprit.record)
            )


def job_view(runtime: Runtime, job: CaptureJob) -> dict[str, Any]:
    """The EPCIS 2.0 capture job resource, plus the operation anchoring the events."""
    op = None
    if job.operation_id:
        with Session(runtime.engine) as session:
            op = session.execute(select(Operation).where(col(Operation.id) == job.operation_id)).scalar()
    errors: list[dict[str, Any]] = json.loads(job.errors)
    running = op is not None and op.status not in TERMINAL
    if op is not None and op.status == OperationStatus.FAILED and op.error:
        errors = [*errors, json.loads(op.error)]
    finished = job.finished_at or (op.finished_at if op is not None and not running else None)
    view: dict[str, Any] = {
        "captureID": job.id,
        "createdAt": ev.timestamp(job.created_at),
        "running": running,
        "success": not running and not errors,
        "captureErrorBehaviour": job.error_behaviour,
        "errors": errors,
        "eventsTotal": job.events_total,
        "eventsAccepted": job.events_accepted,
    }
    if finished is not None:
        view["finishedAt"] = ev.timestamp(finished)
    if op is not None:
        view["operation"] = f"/v1/operations/{op.id}"
        view["operationStatus"] = op.status
    return view


def _job_response(runtime: Runtime, job: CaptureJob, status: int) -> JSONResponse:
    return JSONResponse(
        job_view(runtime, job),
        status_code=status,
        headers={"Location": f"/epcis/capture/{job.id}", **EPCIS_HEADERS},
    )


def _capture_replay(runtime: Runtime, op: Operation) -> JSONResponse | None:
    """An Idempotency-Key replay of a capture answers its capture job (200), as the capture did."""
    with Session(runtime.engine) as session:
        job = session.execute(select(CaptureJob).where(col(CaptureJob.operation_id) == op.id)).scalar()
    return _job_response(runtime, job, 200) if job is not None else None


# the Write dependency, answering a replay with the capture job instead of the operation
CaptureWriteDep = Annotated[Write, Depends(write_dependency(_capture_replay), scope="function")]


@router.post(
    "/capture",
    status_code=202,
    summary="Capture an EPCIS 2.0 document: each event becomes its ledger action or is anchored by hash",
    responses={
        202: {"description": "The capture job: its events are being anchored"},
        200: {"description": "The capture job, finished already; or an Idempotency-Key replays it"},
        415: problem_response("The document is not application/json or application/ld+json"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "object"}} for t in MEDIA_TYPES},
        }
    },
)
async def capture(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.capture"))],
    write: CaptureWriteDep,
    behaviour: ErrorBehaviour = "rollback",
) -> JSONResponse:
    # an Idempotency-Key replay never gets here: CaptureWriteDep answers it with the first job
    document = _document(await request.body(), request.headers.get("content-type", ""))
    assert principal.org_id is not None
    mapped, errors = _map_all(runtime, principal, document)
    total = len(document["epcisBody"]["eventList"])
    job = CaptureJob(
        id=uuid.uuid4().hex,
        org_id=principal.org_id,
        user_id=principal.user_id,
        error_behaviour=behaviour,
        events_total=total,
        errors=json.dumps(errors),
    )
    if errors and (behaviour == "rollback" or not mapped):
        job.finished_at = time.time()
        with Session(runtime.engine) as session:
            session.add(job)
            session.commit()
            session.refresh(job)
        statuses = {int(e["status"]) for e in errors}
        status = statuses.pop() if len(statuses) == 1 else 422
        raise Problem(
            status,
            "EPCIS document refused",
            type=PROBLEM_BASE + "capture-refused",
            detail=f"{len(errors)} of {total} events refused; nothing was applied"
            + (" (GS1-Capture-Error-Behaviour: rollback)" if mapped else ""),
            headers={"Location": f"/epcis/capture/{job.id}"},
            captureID=job.id,
            errors=errors,
        )
    plan = assemble(runtime, mapped)
    plan.capture_id = job.id
    plan.prechecked = True
    plan.subject = job.id
    plan.result = {"captureID": job.id}
    with Session(runtime.engine) as session:  # the job exists before its operation can finish
        job.events_accepted = len(mapped)
        session.add(job)
        session.commit()
        session.refresh(job)
    try:
        await write.submit(principal, plan, document)
    except Exception:
        with Session(runtime.engine) as session:
            stored = session.get(CaptureJob, job.id)
            if stored is not None:
                session.delete(stored)
                session.commit()
        raise
    if not write.request.state.operation_created:
        # a concurrent twin with the same key (another API process) was accepted first: its job
        # is the answer, this one's goes (unless the twin has not linked its job yet)
        with Session(runtime.engine) as session:
            first = session.execute(
                select(CaptureJob).where(col(CaptureJob.operation_id) == write.request.state.operation_id)
            ).scalar()
            stored = session.get(CaptureJob, job.id)
            if first is not None and stored is not None:
                session.delete(stored)
                session.commit()
                session.refresh(first)
        if first is not None:
            return _job_response(runtime, first, 200)
    with Session(runtime.engine) as session:
        stored = session.get(CaptureJob, job.id)
        assert stored is not None
        stored.operation_id = write.request.state.operation_id
        session.add(stored)
        session.commit()
        session.refresh(stored)
    view_status = 200 if not job_view(runtime, stored)["running"] else 202
    return _job_response(runtime, stored, view_status)


@router.get("/capture/{capture_id}", summary="A capture job: what became of each event")
def capture_job(
    capture_id: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.capture"))],
) -> JSONResponse:
    with Session(runtime.engine) as session:
        job = session.get(CaptureJob, capture_id)
    if job is None or job.org_id != principal.org_id:
        raise rule_problem(
            404, "unknown-capture", f"no capture job {capture_id} of yours", field="capture_id"
        )
    return _job_response(runtime, job, 200)


@router.get("/capture", summary="Your organisation's capture jobs, newest first")
def capture_jobs(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.capture"))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    with Session(runtime.engine) as session:
        jobs = session.execute(
            select(CaptureJob)
            .where(col(CaptureJob.org_id) == principal.org_id)
            .order_by(col(CaptureJob.created_at).desc())
            .limit(limit)
        ).scalars()
        views = [job_view(runtime, j) for j in jobs]
    return JSONResponse({"captureJobs": views}, headers=EPCIS_HEADERS)


# ---------------------------------------------------------------------- query and export


def _listed(values: list[str] | None) -> list[str]:
    """Repeated parameters and `|`-separated values (EPCIS 2.0 REST) both mean "any of"."""
    return [v for value in values or [] for v in value.split("|") if v]


def _time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise rule_problem(422, "invalid-time", "an RFC 3339 date-time with offset", field=name) from None


def event_query(
    request: Request,
    event_type: Annotated[list[str] | None, Query(alias="eventType")] = None,
    eq_biz_step: Annotated[list[str] | None, Query(alias="EQ_bizStep")] = None,
    eq_disposition: Annotated[list[str] | None, Query(alias="EQ_disposition")] = None,
    eq_biz_location: Annotated[list[str] | None, Query(alias="EQ_bizLocation")] = None,
    match_epc: Annotated[list[str] | None, Query(alias="MATCH_epc")] = None,
    match_any_epc: Annotated[list[str] | None, Query(alias="MATCH_anyEPC")] = None,
    ge_event_time: Annotated[str | None, Query(alias="GE_eventTime")] = None,
    lt_event_time: Annotated[str | None, Query(alias="LT_eventTime")] = None,
    per_page: Annotated[int, Query(alias="perPage", ge=1, le=1000)] = 100,
    next_page_token: Annotated[str | None, Query(alias="nextPageToken")] = None,
) -> EventQuery:
    unknown = sorted(set(request.query_params) - QUERY_PARAMETERS - CONTROL_PARAMETERS)
    if unknown:
        raise Problem(
            400,
            "QueryParameterException",
            type="epcisException:QueryParameterException",
            detail=f"query parameter {unknown[0]} is not supported by this server"
            + (f" (nor {', '.join(unknown[1:])})" if unknown[1:] else "")
            + f"; supported: {', '.join(sorted(QUERY_PARAMETERS))}",
            parameter=unknown[0],
            field=unknown[0],
        )
    return EventQuery(
        event_types=_listed(event_type),
        biz_steps=_listed(eq_biz_step),
        dispositions=_listed(eq_disposition),
        biz_locations=_listed(eq_biz_location),
        match_epc=_listed(match_epc),
        match_any_epc=_listed(match_any_epc),
        ge_event_time=_time(ge_event_time, "GE_eventTime"),
        lt_event_time=_time(lt_event_time, "LT_eventTime"),
        per_page=per_page,
        after=read_token(next_page_token),
    )


QueryDep = Annotated[EventQuery, Depends(event_query)]


def _page(
    request: Request, runtime: Runtime, principal: Principal, query: EventQuery, *, export: bool
) -> JSONResponse:
    with Session(runtime.engine) as session:
        events, token = run(session, principal, query, base_url=str(request.base_url))
    now = time.time()
    body = ev.document(events, created=now) if export else ev.query_document(events, created=now)
    headers = dict(EPCIS_HEADERS)
    if token:
        next_url = request.url.remove_query_params("nextPageToken").include_query_params(nextPageToken=token)
        headers["Link"] = f'<{next_url.path}?{next_url.query}>; rel="next"'  # EPCIS 2.0 REST paging
    return JSONResponse(body, headers=headers)


@router.get("/events", summary="EPCIS events you may see (SimpleEventQuery parameters), as a query document")
def events(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.read"))],
    query: QueryDep,
) -> JSONResponse:
    return _page(request, runtime, principal, query, export=False)


@router.get("/epcs/{epc:path}/events", summary="The events naming an identifier (any GS1 form)")
def epc_events(
    epc: str,
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.read"))],
    query: QueryDep,
) -> JSONResponse:
    query.match_any_epc = [*query.match_any_epc, epc]
    return _page(request, runtime, principal, query, export=False)


@router.get("/events/{event_id:path}", summary="One event by its Event Hash ID")
def event_by_id(
    event_id: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.read"))],
) -> JSONResponse:
    with Session(runtime.engine) as session:
        # an unencoded "?ver=CBV2.0" arrives as a query string: accept the id without it too
        ids = [event_id, event_id + "?ver=CBV2.0"]
        seq = session.execute(select(col(EpcisEvent.seq)).where(col(EpcisEvent.hash_id).in_(ids))).scalar()
        found: list[dict[str, Any]] = []
        if seq is not None:
            found, _ = run(session, principal, EventQuery(after=seq - 1, per_page=1))
    if not found or found[0].get("eventID") not in ids:
        raise rule_problem(404, "unknown-event", f"no event {event_id} you may see", field="event_id")
    return JSONResponse(found[0], headers=EPCIS_HEADERS)


@router.get("/export", summary="The events you may see as an EPCIS 2.0 document (same parameters as /events)")
def export(
    request: Request,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("epcis.read"))],
    query: QueryDep,
) -> JSONResponse:
    return _page(request, runtime, principal, query, export=True)
