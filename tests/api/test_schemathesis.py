"""Schemathesis against the OpenAPI spec with valid credentials: no 5xx, every response matches the spec.

The spec is the one the running API serves at /openapi.json; the cases go over HTTP to that same
uvicorn server, with a real chain, indexer and submitter behind it. Every operation of the spec gets a
few cases, valid (positive) and invalid (negative) by the spec, as three users in turn: a sponsor's
operator, a pharmacy's operator and the consortium admin. A refusal (401, 403, 404, 409, 422...) is a
fine answer to random input as long as the spec documents it; every response must have a documented
status code and content type and a body that matches the documented schema, and none may be a 5xx.

The network is this module's own, built with the harness of conftest.py: the cases change state (the
admin's suspend organisations, disable users and revoke tokens; the operators register webhooks to
random URLs), which must not leak into the package's shared `net` and `consortium`.

`schemathesis.pytest.from_fixture` would load the spec lazily as well, but it rewrites the pytest
node id through `Node._nodeid`, which pytest 9.2 no longer has; hence one test per user that loads
the live spec and runs each operation as a Hypothesis test in a pytest subtest (`operation.as_strategy`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err, Ok
from sqlmodel import Session, col, select

from api.edge.security import hash_token
from api.models import ApiToken, User
from tests.api.conftest import ApiNet, onboard_consortium, running_network

CHECKS = [
    not_a_server_error,
    status_code_conformance,  # the status code is documented for the operation
    content_type_conformance,  # ... and so is the response's content type
    response_headers_conformance,
    response_schema_conformance,  # the body matches the schema documented for both
]
# user -> Hypothesis examples per operation (about half valid by the spec, half not). The sponsor's
# operator gets the most. Generating a case costs more than answering it: the file takes about 1.5 min
# on two idle cores, under 3 min on two busy ones.
USERS = {"sponsor.operator": 8, "pharmacy.operator": 5, "admin": 5}
REQUEST_TIMEOUT_S = 30
Operation = APIOperation[Any, Any, Any, Any]


@dataclass(frozen=True)
class Fuzzer:
    """A user the cases are sent as: their token, and the rows that must survive the run."""

    token: str
    user_id: int
    token_id: int
    org_id: int | None


@dataclass(frozen=True)
class FuzzNet:
    net: ApiNet
    users: dict[str, Fuzzer]

    def protects(self, case: Case[Any]) -> bool:
        """True for a case that would lock a user of the run out: the admin revoking one of their
        tokens, disabling one of them, or suspending or offboarding their organisation. Every
        later case would be a 401 (then a 429) or a 403, and test nothing."""
        users = self.users.values()
        kept: dict[str, tuple[str, set[int | None]]] = {
            "POST /v1/tokens/{token_id}/revoke": ("token_id", {f.token_id for f in users}),
            "POST /v1/users/{user_id}/disable": ("user_id", {f.user_id for f in users}),
            "POST /v1/organizations/{org_id}/status": ("org_id", {f.org_id for f in users}),
        }
        route = f"{case.method.upper()} {case.path}"
        if route not in kept:
            return False
        name, ids = kept[route]
        try:
            return int(str((case.path_parameters or {}).get(name))) in ids
        except ValueError:  # not a number: no row at all
            return False


@pytest.fixture(scope="module")
def fuzz_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzNet]:
    with running_network(tmp_path_factory.mktemp("schemathesis")) as net:
        consortium = onboard_consortium(net)
        users: dict[str, Fuzzer] = {}
        with Session(net.engine) as session:
            for name in USERS:
                org, _, role = name.partition(".")
                token = net.admin_token if name == "admin" else consortium.tokens[(org, role)]
                row = session.exec(
                    select(ApiToken, User)
                    .join(User, col(User.id) == col(ApiToken.user_id))
                    .where(col(ApiToken.token_hash) == hash_token(token))
                ).one()
                api_token, user = row
                assert api_token.id is not None and user.id is not None
                users[name] = Fuzzer(token, user.id, api_token.id, user.org_id)
        yield FuzzNet(net, users)


def operation_cases(operation: Operation) -> st.SearchStrategy[Case[Any]]:
    """Valid and invalid cases of `operation`, bounded where an unbounded answer would hang the run."""
    fixed: dict[str, Any] = {}
    if operation.method.upper() == "GET" and operation.path == "/v1/notifications/stream":
        # a server-sent event stream that, followed, never ends: `follow=false` sends what there is and
        # ends (still the same route, headers and event format). /v1/operations/{id}/events ends when its
        # operation does, and generated ids name none (404).
        fixed["query"] = {"follow": "false"}
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, **fixed),
        operation.as_strategy(GenerationMode.NEGATIVE, **fixed),
    )


def check_operation(operation: Operation, fuzz: FuzzNet, session: requests.Session, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,  # a write goes through the chain pre-check; timing is not what this tests
        derandomize=True,  # the same cases on every run, in CI too
        database=None,  # ... and nothing replayed from earlier runs
        phases=[Phase.explicit, Phase.generate],  # no shrinking: each step would be a request
        suppress_health_check=list(HealthCheck),  # slow, filtered data is expected here
    )
    @given(case=operation_cases(operation))
    def run(case: Case[Any]) -> None:
        assume(not fuzz.protects(case))
        case.call_and_validate(
            base_url=fuzz.net.base_url, session=session, checks=CHECKS, timeout=REQUEST_TIMEOUT_S
        )

    run()


@pytest.mark.parametrize("user", list(USERS))
def test_every_operation_answers_as_its_spec_says(
    user: str, fuzz_net: FuzzNet, subtests: pytest.Subtests
) -> None:
    base_url = fuzz_net.net.base_url
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_S)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fuzz_net.users[user].token}"
    operations = list(schema.get_all_operations())
    # every path and method of the spec (the pages under /ui are not in it)
    assert len(operations) == sum(
        1 for item in schema.raw_schema["paths"].values() for method in item if method != "parameters"
    )
    assert not [result.err() for result in operations if isinstance(result, Err)]
    for result in operations:
        assert isinstance(result, Ok)
        operation = result.ok()
        with subtests.test(msg=operation.label):
            check_operation(operation, fuzz_net, session, USERS[user])
    # the user was not locked out along the way (see FuzzNet.protects)
    me = session.get(f"{base_url}/v1/me", timeout=REQUEST_TIMEOUT_S)
    assert me.status_code == 200, me.text
