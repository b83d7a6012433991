"""What the OpenAPI document says about errors and accepted writes, so that it matches what the API
answers (checked by tests/api/test_schemathesis.py).

Every error is an RFC 9457 problem document (api/edge/problems.py) served as `application/problem+json`;
FastAPI alone would document only a 422 with its own `{"detail": [...]}` body, which this API never
sends. Writes answer 202 with the operation, or 200 when `wait=true` saw it finish or an
Idempotency-Key replays it (api/routes/common.py)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.edge.problems import PROBLEM_JSON
from api.write.outbox import OperationView

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. Rules add extension members, e.g. `field` (the request "
    "field at fault), `errors` (every validation error), `action`, `operation`.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "the rule: urn:rxledger:problem:<rule>, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599, "description": "the HTTP status"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI response answered with a problem document."""
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# The errors any route may answer (the app's `responses=`: routes add or override their own).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_response("Malformed: a body not JSON or nested too deep, a bad parameter value"),
    401: problem_response("No valid bearer token; or the credential re-entered for an e-signature is wrong"),
    403: problem_response("Not allowed: the caller's role or organisation may not do this"),
    404: problem_response("No such resource, or none the caller may see"),
    409: problem_response("Conflicts with the current state: a ledger rule refuses it"),
    413: problem_response("The request body is larger than the API takes"),
    422: problem_response("Invalid request: the problem names the field and the rule"),
    429: problem_response("Too many failed authentications from this address; see Retry-After"),
    503: problem_response("The chain node or the database is unreachable; nothing was done; see Retry-After"),
}

# The write routes (`status_code=202`) that answer with the operation (api/routes/common.py:submit).
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: the operation, followed at its Location", "model": OperationView},
    200: {
        "description": "The operation has finished (wait=true), or an Idempotency-Key replays it",
        "model": OperationView,
    },
}


def install_openapi(app: FastAPI) -> None:
    """Add the Problem schema that PROBLEM_RESPONSES refer to to the app's OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        return generate()  # the document made above, kept by FastAPI

    app.openapi = openapi  # type: ignore[method-assign]
