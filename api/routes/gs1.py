"""GS1 identifiers for people and scanners: parse any form into the canonical one with every other
form, and the product master data EPC URIs need (the GS1 company prefix length)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import Session

from api.edge.auth import Permit, Principal, RuntimeDep, forbidden
from api.edge.identifiers import Gtin, sscc_key
from api.edge.rules import rule_problem
from api.models import ProductMaster
from api.runtime import Runtime
from node.gs1.scan import IdentifierError, parse
from node.indexer.schema import Product, table
from node.ledger.identifiers import unit_key

router = APIRouter(prefix="/v1", tags=["GS1 identifiers"])


class ParseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str = Field(
        min_length=1,
        max_length=2000,
        examples=[
            "]d2010950600013435217281231\u001d10L1\u001d21PK7Q2X9A",
            "urn:epc:id:sscc:4098765.0000700000",
        ],
    )


class Parsed(BaseModel):
    kind: str  # sgtin | lgtin | gtin | sscc
    gtin: str | None
    serial: str | None
    lot: str | None
    expiry: dt.date | None
    sscc: str | None
    attributes: dict[str, str]
    key: str | None = Field(description="the on-chain key of the pack or case")
    company_prefix_length: int | None
    element_string: str
    hri: str
    digital_link: str
    epc_uri: str | None = Field(description="absent when the company prefix length is unknown")


def prefix_lengths(runtime: Runtime) -> dict[str, int]:
    with Session(runtime.engine) as session:
        rows = session.execute(select(ProductMaster)).scalars()
        return {r.gtin: r.company_prefix_length for r in rows if r.company_prefix_length is not None}


@router.post(
    "/identifiers/parse",
    summary="Read an identifier in any GS1 form (scan, element string, Digital Link, EPC URI)",
)
def parse_identifier(
    body: ParseRequest, runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("read"))]
) -> Parsed:
    try:
        identifier = parse(body.input, prefix_lengths=prefix_lengths(runtime))
    except IdentifierError as exc:
        raise rule_problem(422, "invalid-identifier", str(exc), field="input", part=exc.part) from None
    key = None
    if identifier.kind == "sgtin" and identifier.gtin and identifier.serial:
        key = "0x" + unit_key(identifier.gtin, identifier.serial).hex()
    elif identifier.kind == "sscc" and identifier.sscc:
        key = sscc_key(identifier.sscc)
    epc_uri = None
    if identifier.prefix_length is not None and identifier.kind != "gtin":
        epc_uri = identifier.epc_uri()
    return Parsed(
        kind=identifier.kind,
        gtin=identifier.gtin,
        serial=identifier.serial,
        lot=identifier.lot,
        expiry=identifier.expiry,
        sscc=identifier.sscc,
        attributes=identifier.attributes,
        key=key,
        company_prefix_length=identifier.prefix_length,
        element_string=identifier.element_string(),
        hri=identifier.hri(),
        digital_link=identifier.digital_link(),
        epc_uri=epc_uri,
    )


class MasterData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    company_prefix_length: int | None = Field(default=None, ge=6, le=12)
    name: str = Field(default="", max_length=200)


class MasterDataOut(MasterData):
    gtin: str


@router.put("/products/{gtin}/master-data", summary="Set a product's master data (its sponsor)")
def put_master_data(
    gtin: Gtin,
    body: MasterData,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(Permit("products.register"))],
) -> MasterDataOut:
    with Session(runtime.engine) as session:
        product = session.execute(select(table(Product)).where(table(Product).c.gtin == gtin)).first()
        if product is None:
            raise rule_problem(404, "unknown-product", f"GTIN {gtin} is not registered", field="gtin")
        if product.sponsor_org != principal.org_id:
            raise forbidden(
                principal, "products.register", "only the product's sponsor keeps its master data"
            )
        row = session.get(ProductMaster, gtin) or ProductMaster(gtin=gtin)
        row.company_prefix_length = body.company_prefix_length
        row.name = body.name
        row.updated_by_org = principal.org_id
        row.updated_at = time.time()
        session.add(row)
        session.commit()
    return MasterDataOut(gtin=gtin, **body.model_dump())


@router.get("/products/{gtin}/master-data", summary="A product's master data")
def get_master_data(
    gtin: Gtin, runtime: RuntimeDep, _: Annotated[Principal, Depends(Permit("read"))]
) -> MasterDataOut:
    with Session(runtime.engine) as session:
        row = session.get(ProductMaster, gtin)
    if row is None:
        raise rule_problem(404, "unknown-product", f"no master data for GTIN {gtin}", field="gtin")
    return MasterDataOut(gtin=gtin, company_prefix_length=row.company_prefix_length, name=row.name)
