"""Products, manufacturer authorisations, batches, certificates and quality decisions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from eth_utils.crypto import keccak
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlmodel import Session, col

from api.edge import signature_lock
from api.edge.auth import Permit, Principal, RuntimeDep, forbidden
from api.edge.identifiers import Bytes32Hex, Gln, Gtin, Lot
from api.edge.problems import Problem
from api.edge.rules import rule_problem
from api.edge.security import verify_credential
from api.models import Document, SignatureRecord
from api.read.alerts import raise_signature_locked
from api.routes.common import MAX_ROW_ID, RowId, Write, WriteDep, batch_row, org_row
from api.routes.openapi import ACCEPTED, problem_response
from api.runtime import Runtime
from api.write.plan import Plan, TxStep
from node.gs1.charset import is_digits
from node.indexer.schema import (
    Batch,
    BatchStatusChange,
    Certificate,
    ManufacturerAuthorization,
    Product,
    table,
)
from node.ledger.constants import BatchStatus, CertificateKind
from node.ledger.identifiers import batch_id as derive_batch_id

router = APIRouter(prefix="/v1", tags=["products, batches and certificates"])

STATUS_NAMES = {s.value: s.name.lower() for s in BatchStatus}
KIND_BY_NAME = {k.name.lower(): k for k in CertificateKind if k != CertificateKind.NONE}
KindName = Literal["analysis", "conformance", "qp_certification", "other"]


def meaning_bytes(meaning: str, field: str = "meaning") -> bytes:
    raw = meaning.encode()
    if len(raw) > 32:
        raise rule_problem(
            422, "meaning-too-long", "a meaning is at most 32 bytes (it is stored on chain)", field=field
        )
    return raw.ljust(32, b"\0")


# ---------------------------------------------------------------------- products


class NewProduct(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gtin: Gtin


class ProductOut(BaseModel):
    gtin: str
    sponsor_org: int
    manufacturers: list[int]


class Authorization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org_id: int = Field(gt=0, le=MAX_ROW_ID)


@router.post("/products", status_code=202, responses=ACCEPTED, summary="Register a product (sponsor)")
async def register_product(
    body: NewProduct,
    principal: Annotated[Principal, Depends(Permit("products.register"))],
    write: WriteDep,
) -> JSONResponse:
    plan = Plan(
        kind="products.register",
        subject=body.gtin,
        steps=[TxStep("BatchRegistry", "registerProduct", [int(body.gtin)])],
    )
    return await write.submit(principal, plan, body)


@router.get("/products", summary="Products on the network")
def list_products(runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("read"))]) -> list[ProductOut]:
    with Session(runtime.engine) as session:
        products = session.execute(select(table(Product)).order_by(table(Product).c.gtin)).all()
        auths = session.execute(
            select(table(ManufacturerAuthorization)).where(table(ManufacturerAuthorization).c.active)
        ).all()
    by_gtin: dict[str, list[int]] = {}
    for a in auths:
        by_gtin.setdefault(a.gtin, []).append(a.org_id)
    return [
        ProductOut(gtin=p.gtin, sponsor_org=p.sponsor_org, manufacturers=sorted(by_gtin.get(p.gtin, [])))
        for p in products
    ]


def _product(runtime: Runtime, gtin: str) -> Any:
    with Session(runtime.engine) as session:
        row = session.execute(select(table(Product)).where(table(Product).c.gtin == gtin)).first()
    if row is None:
        raise rule_problem(404, "unknown-product", f"GTIN {gtin} is not registered", field="gtin")
    return row


@router.post(
    "/products/{gtin}/manufacturers",
    status_code=202,
    responses=ACCEPTED,
    summary="Authorise a CMO for a product",
)
async def authorize_manufacturer(
    gtin: Gtin,
    body: Authorization,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("products.authorize"))],
    write: WriteDep,
) -> JSONResponse:
    _product(runtime, gtin)
    org_row(runtime, body.org_id)
    plan = Plan(
        kind="products.authorize",
        subject=gtin,
        steps=[TxStep("BatchRegistry", "authorizeManufacturer", [int(gtin), body.org_id])],
    )
    return await write.submit(
        principal,
        plan,
        {"gtin": gtin, **body.model_dump()},
    )


@router.delete(
    "/products/{gtin}/manufacturers/{org_id}",
    status_code=202,
    responses=ACCEPTED,
    summary="Withdraw a CMO's authorisation",
)
async def revoke_manufacturer(
    gtin: Gtin,
    org_id: RowId,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("products.authorize"))],
    write: WriteDep,
) -> JSONResponse:
    _product(runtime, gtin)
    org_row(runtime, org_id, "org_id")
    plan = Plan(
        kind="products.revoke",
        subject=gtin,
        steps=[TxStep("BatchRegistry", "revokeManufacturer", [int(gtin), org_id])],
    )
    return await write.submit(
        principal,
        plan,
        {"gtin": gtin, "org_id": org_id},
    )


# ---------------------------------------------------------------------- batches


def expiry_yymmdd(value: str) -> int:
    """GS1 AI 17 form YYMMDD (DD may be 00: end of month), or an ISO date."""
    if is_digits(value, 6):
        return int(value)
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError("expiry is YYMMDD (GS1 AI 17) or an ISO date YYYY-MM-DD") from None
    if not 2000 <= date.year <= 2099:
        raise ValueError("expiry must fall in 2000-2099")
    return int(date.strftime("%y%m%d"))


class NewBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gtin: Gtin
    lot: Lot
    expiry: str = Field(examples=["281231", "2028-12-31"])
    site_gln: Gln

    @field_validator("expiry")
    @classmethod
    def _expiry(cls, value: str) -> str:
        expiry_yymmdd(value)
        return value


class StatusChangeOut(BaseModel):
    block_number: int
    from_status: str
    to_status: str
    reason_hash: str
    org_id: int
    signer: str
    tx_hash: str
    timestamp: int
    signature: dict[str, Any] | None = (
        None  # the e-signature record behind reason_hash, when this API holds it
    )


class CertificateOut(BaseModel):
    position: int
    kind: str
    document_hash: str
    meaning: str
    org_id: int
    signer: str
    tx_hash: str
    timestamp: int
    document_available: bool = False


class BatchOut(BaseModel):
    batch_id: str
    gtin: str
    lot: str
    expiry: int
    site_gln: str
    manufacturer: int
    sponsor: int
    status: str
    suspect: int
    history: list[StatusChangeOut] = []
    certificates: list[CertificateOut] = []


@router.post("/batches", status_code=202, responses=ACCEPTED, summary="Create a batch (CMO)")
async def create_batch(
    body: NewBatch,
    principal: Annotated[Principal, Depends(Permit("batches.create"))],
    write: WriteDep,
) -> JSONResponse:
    bid = "0x" + derive_batch_id(body.gtin, body.lot).hex()
    plan = Plan(
        kind="batches.create",
        subject=bid,
        result={"batch_id": bid},
        steps=[
            TxStep(
                "BatchRegistry",
                "createBatch",
                [int(body.gtin), body.lot, expiry_yymmdd(body.expiry), int(body.site_gln)],
            )
        ],
    )
    return await write.submit(principal, plan, body)


def _meaning_text(raw_hex: str) -> str:
    try:
        return bytes.fromhex(raw_hex.removeprefix("0x")).rstrip(b"\0").decode()
    except UnicodeDecodeError:
        return raw_hex


def _batch_out(runtime: Runtime, row: Any, *, full: bool) -> BatchOut:
    out = BatchOut(
        batch_id=row.batch_id,
        gtin=row.gtin,
        lot=row.lot,
        expiry=row.expiry,
        site_gln=row.site_gln,
        manufacturer=row.manufacturer,
        sponsor=row.sponsor,
        status=STATUS_NAMES.get(row.status, str(row.status)),
        suspect=row.suspect,
    )
    if not full:
        return out
    h, c = table(BatchStatusChange), table(Certificate)
    with Session(runtime.engine) as session:
        history = session.execute(
            select(h).where(h.c.batch_id == row.batch_id).order_by(h.c.block_number, h.c.log_index)
        ).all()
        certs = session.execute(select(c).where(c.c.batch_id == row.batch_id).order_by(c.c.position)).all()
        records = {
            r.record_hash: r
            for r in session.execute(
                select(SignatureRecord).where(SignatureRecord.subject == row.batch_id)
            ).scalars()  # type: ignore[arg-type]
        }
        docs = {
            d
            for d in session.execute(
                select(col(Document.sha256)).where(col(Document.sha256).in_([x.document_hash for x in certs]))
            ).scalars()
        }
    out.history = [
        StatusChangeOut(
            block_number=x.block_number,
            from_status=STATUS_NAMES.get(x.from_status, str(x.from_status)),
            to_status=STATUS_NAMES.get(x.to_status, str(x.to_status)),
            reason_hash=x.reason_hash,
            org_id=x.org_id,
            signer=x.signer,
            tx_hash=x.tx_hash,
            timestamp=x.timestamp,
            signature=json.loads(records[x.reason_hash].manifest) if x.reason_hash in records else None,
        )
        for x in history
    ]
    out.certificates = [
        CertificateOut(
            position=x.position,
            kind=CertificateKind(x.kind).name.lower(),
            document_hash=x.document_hash,
            meaning=_meaning_text(x.meaning),
            org_id=x.org_id,
            signer=x.signer,
            tx_hash=x.tx_hash,
            timestamp=x.timestamp,
            document_available=x.document_hash in docs,
        )
        for x in certs
    ]
    return out


@router.get("/batches", summary="Batches, newest first")
def list_batches(
    runtime: RuntimeDep,
    _: Annotated[Principal, Depends(Permit("read"))],
    gtin: Gtin | None = None,
    lot: Lot | None = None,
    status: Annotated[
        str | None, Query(pattern="^(quarantine|released|rejected|recalled|suspended)$")
    ] = None,
    limit: Annotated[int, Query(gt=0, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> list[BatchOut]:
    b = table(Batch)
    stmt = select(b).order_by(b.c.idx.desc()).limit(limit).offset(offset)
    if gtin is not None:
        stmt = stmt.where(b.c.gtin == gtin)
    if lot is not None:
        stmt = stmt.where(b.c.lot == lot)
    if status is not None:
        stmt = stmt.where(b.c.status == BatchStatus[status.upper()].value)
    with Session(runtime.engine) as session:
        rows = session.execute(stmt).all()
    return [_batch_out(runtime, r, full=False) for r in rows]


@router.get("/batches/{batch_id}", summary="A batch with its status history and certificates")
def get_batch(
    batch_id: Bytes32Hex, runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("read"))]
) -> BatchOut:
    return _batch_out(runtime, batch_row(runtime, batch_id), full=True)


# ---------------------------------------------------------------------- documents


def store_document(
    runtime: Runtime, data: bytes, *, filename: str, media_type: str, principal: Principal
) -> str:
    """Write `data` content-addressed (documents_dir/ab/abcdef...) and record it; returns 0x-sha256."""
    digest = hashlib.sha256(data).hexdigest()
    path = document_path(runtime, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    sha = "0x" + digest
    with Session(runtime.engine) as session:
        if session.get(Document, sha) is None:
            session.add(
                Document(
                    sha256=sha,
                    size=len(data),
                    media_type=media_type,
                    filename=filename,
                    uploaded_by_org=principal.org_id,
                    uploaded_by_user=principal.user_id,
                )
            )
            session.commit()
    return sha


def document_path(runtime: Runtime, digest_hex: str) -> Path:
    digest_hex = digest_hex.removeprefix("0x").lower()
    return runtime.settings.documents_dir / digest_hex[:2] / digest_hex


class StoredDocument(BaseModel):
    document_sha256: str
    size: int


@router.post("/documents", status_code=201, summary="Store a document (e.g. a QP certificate before release)")
async def upload_document(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("certificates.anchor"))],
    file: Annotated[UploadFile, File()],
) -> StoredDocument:
    data = await file.read()
    if not data:
        raise rule_problem(422, "empty-document", "the uploaded file is empty", field="file")
    media = file.content_type or "application/octet-stream"
    sha = store_document(
        runtime, data, filename=file.filename or "document", media_type=media, principal=principal
    )
    return StoredDocument(document_sha256=sha, size=len(data))


@router.post(
    "/batches/{batch_id}/certificates",
    status_code=202,
    responses=ACCEPTED,
    summary="Upload and anchor a certificate",
)
async def anchor_certificate(
    batch_id: Bytes32Hex,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("certificates.anchor"))],
    file: Annotated[UploadFile, File(description="the certificate (PDF, XML...)")],
    write: WriteDep,
    kind: Annotated[KindName, Form()] = "analysis",
    meaning: Annotated[str, Form(max_length=32)] = "approved",
) -> JSONResponse:
    batch_row(runtime, batch_id)
    data = await file.read()
    if not data:
        raise rule_problem(422, "empty-document", "the uploaded file is empty", field="file")
    sha = store_document(
        runtime,
        data,
        filename=file.filename or "certificate",
        media_type=file.content_type or "application/octet-stream",
        principal=principal,
    )
    plan = Plan(
        kind="certificates.anchor",
        subject=batch_id.lower(),
        result={"document_sha256": sha},
        steps=[
            TxStep(
                "BatchRegistry",
                "anchorCertificate",
                [
                    bytes.fromhex(batch_id[2:]),
                    int(KIND_BY_NAME[kind]),
                    bytes.fromhex(sha[2:]),
                    meaning_bytes(meaning),
                ],
            )
        ],
    )
    body = {"batch_id": batch_id.lower(), "kind": kind, "meaning": meaning, "document_sha256": sha}
    return await write.submit(principal, plan, body)


class VerifyOut(BaseModel):
    document_sha256: str
    anchored: bool
    certificates: list[CertificateOut]


@router.post(
    "/batches/{batch_id}/certificates/verify",
    summary="Does this file match a certificate anchored for the batch?",
)
async def verify_certificate(
    batch_id: Bytes32Hex,
    runtime: RuntimeDep,
    _: Annotated[Principal, Depends(Permit("read"))],
    file: Annotated[UploadFile, File()],
) -> VerifyOut:
    row = batch_row(runtime, batch_id)
    sha = "0x" + hashlib.sha256(await file.read()).hexdigest()
    full = _batch_out(runtime, row, full=True)
    matches = [c for c in full.certificates if c.document_hash == sha]
    return VerifyOut(document_sha256=sha, anchored=bool(matches), certificates=matches)


@router.get(
    "/documents/{sha256}",
    summary="Download a stored certificate",
    response_class=FileResponse,
    responses={200: {"description": "The file as uploaded, with its media type", "content": {"*/*": {}}}},
)
def download_document(
    sha256: Bytes32Hex,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("documents.download"))],
) -> FileResponse:
    sha = sha256.lower()
    with Session(runtime.engine) as session:
        doc = session.get(Document, sha)
        c, b = table(Certificate), table(Batch)
        batches = session.execute(
            select(b.c.sponsor, b.c.manufacturer)
            .join(c, c.c.batch_id == b.c.batch_id)
            .where(c.c.document_hash == sha)
        ).all()
    if doc is None:
        raise rule_problem(404, "unknown-document", f"no document {sha} is stored here", field="sha256")
    related = doc.uploaded_by_org == principal.org_id or any(principal.org_id in (s, m) for s, m in batches)
    if not (principal.is_admin or "REGULATOR" in principal.org_roles or related):
        raise forbidden(
            principal, "documents.download", "the document belongs to batches of other organisations"
        )
    return FileResponse(document_path(runtime, sha), media_type=doc.media_type, filename=doc.filename)


# ---------------------------------------------------------------------- quality decisions (e-signed)


class ESignature(BaseModel):
    """21 CFR 11.200: the signer re-enters their credential at each signing."""

    model_config = ConfigDict(extra="forbid")
    username: str
    credential: str = Field(min_length=1, max_length=200)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meaning: str = Field(
        min_length=1, max_length=32, description="what the signature means, e.g. 'released for sale'"
    )
    reason: str = Field(default="", max_length=4000)
    signature: ESignature
    qp_certificate_sha256: Bytes32Hex | None = Field(
        default=None, description="release only: a stored QP certificate to anchor in the same transaction"
    )


# the signed decisions answer 423 as well: the signer's e-signature is locked (21 CFR 11.300(d))
SIGNED: dict[int | str, dict[str, Any]] = {
    423: problem_response(
        "The signer's electronic signature is locked after repeated wrong credentials, until unlocked"
    )
}

_FUNCTIONS = {
    "release": "release",
    "reject": "reject",
    "suspend": "suspend",
    "unsuspend": "unsuspend",
    "recall": "recall",
}


def _signature_locked(limit: int) -> Problem:
    return rule_problem(
        423,
        "signature-locked",
        f"your electronic signature is locked after {limit} wrong credentials in a row; a key admin "
        "of your organisation (or the consortium admin) must unlock it",
        field="signature",
    )


def e_sign(
    runtime: Runtime,
    principal: Principal,
    sig: ESignature,
    *,
    request: Request,
    action: str,
    subject: str,
    meaning: str,
    extra: dict[str, Any],
) -> tuple[bytes, SignatureRecord]:
    """Check the re-entered credential and build the signature record; returns (its hash, record).

    21 CFR 11.300(d): every refused attempt counts against the authenticated signer (also when the
    username typed is someone else's: that one is never looked up, so nothing tells whether it
    exists), a good one resets the count, and at `signature_failure_limit` the signature locks (423)
    until unlocked. The audit row of the request says who tried, with which username, and the count."""
    from api.models import User

    limit = runtime.settings.signature_failure_limit
    with Session(runtime.engine) as session:
        user = session.get(User, principal.user_id)
    assert user is not None and user.id is not None  # the token was just resolved to this user

    def refuse(outcome: str) -> Problem:
        attempt = signature_lock.record_failure(runtime.engine, user.id or 0, limit)
        if attempt.locked_now:
            raise_signature_locked(
                runtime.engine,
                user,
                signature_lock.subject(user.id or 0),
                sig.username,
                attempt.failures,
                limit,
            )
        request.state.audit_detail = signature_lock.audit_detail(
            principal,
            sig.username,
            outcome="locked" if attempt.locked else outcome,
            failures=attempt.failures,
            limit=limit,
            locked=attempt.locked,
            locked_now=attempt.locked_now,
        )
        if attempt.locked:
            return _signature_locked(limit)
        return rule_problem(
            401,
            "signature-credential-invalid",
            "the username or credential re-entered for the signature is wrong",
            field="signature",
        )

    if user.signature_locked_at is not None:
        raise refuse("locked")  # not even checked: a locked signature is no oracle for guesses
    # the hash is checked whichever username was typed: the same work, the same time, either way
    good = verify_credential(sig.credential, user.credential_hash)
    if not (good and sig.username == user.username):
        raise refuse("wrong-credential")
    if not signature_lock.record_success(runtime.engine, user.id):
        raise refuse("locked")  # locked by a parallel attempt since it was read
    request.state.audit_detail = signature_lock.audit_detail(
        principal, sig.username, outcome="signed", failures=0, limit=limit, locked=False, locked_now=False
    )
    signed_at = time.time()
    manifest = {
        "action": action,
        "subject": subject,
        "meaning": meaning,
        "printed_name": user.printed_name,
        "username": user.username,
        "user_id": user.id,
        "org_id": user.org_id,
        "signed_at": dt.datetime.fromtimestamp(signed_at, dt.UTC).isoformat(timespec="milliseconds"),
        **extra,
    }
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    digest = bytes(keccak(text=canonical))
    record = SignatureRecord(
        record_hash="0x" + digest.hex(),
        manifest=canonical,
        user_id=principal.user_id,
        org_id=principal.org_id,
        printed_name=user.printed_name,
        meaning=meaning,
        signed_at=signed_at,
        subject=subject,
        action=action,
    )
    return digest, record


async def decide(
    batch_id: str, action: str, body: Decision, principal: Principal, write: Write
) -> JSONResponse:
    runtime = write.runtime
    row = batch_row(runtime, batch_id)
    bid = batch_id.lower()
    extra: dict[str, Any] = {"gtin": row.gtin, "lot": row.lot, "reason": body.reason}
    if body.qp_certificate_sha256 is not None:
        if action != "release":
            raise rule_problem(
                422,
                "certificate-not-allowed",
                "only a release anchors a QP certificate",
                field="qp_certificate_sha256",
            )
        with Session(runtime.engine) as session:
            if session.get(Document, body.qp_certificate_sha256.lower()) is None:
                raise rule_problem(
                    404,
                    "unknown-document",
                    "upload the QP certificate first (it is not stored here)",
                    field="qp_certificate_sha256",
                )
        extra["qp_certificate_sha256"] = body.qp_certificate_sha256.lower()
    reason_hash, record = e_sign(
        runtime,
        principal,
        body.signature,
        request=write.request,
        action=action,
        subject=bid,
        meaning=body.meaning,
        extra=extra,
    )
    if action == "release" and body.qp_certificate_sha256 is not None:
        step = TxStep(
            "BatchRegistry",
            "releaseWithCertification",
            [
                bytes.fromhex(bid[2:]),
                bytes.fromhex(body.qp_certificate_sha256[2:]),
                meaning_bytes(body.meaning),
                reason_hash,
            ],
        )
    else:
        step = TxStep("BatchRegistry", _FUNCTIONS[action], [bytes.fromhex(bid[2:]), reason_hash])
    plan = Plan(
        kind=f"batches.{action}", subject=bid, steps=[step], result={"signature_record": record.record_hash}
    )
    # the credential never reaches the outbox or the audit log
    logged = body.model_dump(mode="json", exclude={"signature": {"credential"}})
    response = await write.submit(principal, plan, logged)
    record.operation_id = getattr(write.request.state, "operation_id", None)
    with Session(runtime.engine) as session:
        from api.models import Operation

        op = session.execute(select(Operation).where(Operation.id == record.operation_id)).scalar()  # type: ignore[arg-type]
        if (
            op is not None
            and op.result
            and json.loads(op.result).get("signature_record") == record.record_hash
        ):
            session.add(record)  # not on an idempotent replay: that one's record is already stored
            session.commit()
    return response


def _decision_route(action: str) -> None:
    async def route(
        batch_id: Bytes32Hex,
        body: Decision,
        principal: Annotated[Principal, Depends(Permit("batches.decide"))],
        write: WriteDep,
    ) -> JSONResponse:
        return await decide(batch_id, action, body, principal, write)

    route.__name__ = f"batch_{action}"
    router.add_api_route(
        f"/batches/{{batch_id}}/{action}",
        route,
        methods=["POST"],
        status_code=202,
        responses={**ACCEPTED, **SIGNED},
        summary=f"{action.capitalize()} a batch (QP, sponsor; electronically signed)",
    )


for _action in _FUNCTIONS:
    _decision_route(_action)
