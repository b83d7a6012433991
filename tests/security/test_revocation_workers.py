"""Revocation holds at once in every worker: the API served by two uvicorn worker processes (as
`RXLEDGER_WORKERS=2` deploys it), a token used on fresh connections (the kernel hands each to either
worker), revoked through one of them, and refused on the very next request whichever worker takes
it; the same for a disabled user. Nothing caches a principal past the request that read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.admin.bootstrap import ensure_admin
from api.database import api_engine
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import make_web3
from node.deploy import deploy_suite
from node.devnet import Devnet, free_port
from tests.api.conftest import api_settings
from tests.faults.test_api_killed import ApiProcess, process_env

pytestmark = [pytest.mark.chain, pytest.mark.timeout(240)]
REQUESTS = 24  # each on its own connection


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base url, admin token) of the API in two worker processes."""
    tmp: Path = tmp_path_factory.mktemp("workers")
    with Devnet(port=0) as devnet:
        w3 = make_web3(devnet.rpc_url)
        admin_key = dev_accounts()[0]
        deploy_suite(w3, admin_key, manifest_dir=tmp / "deployments")
        settings = api_settings(tmp, devnet.rpc_url)
        engine = api_engine(settings.database_url)
        token = ensure_admin(Runtime.create(settings, engine), admin_key)
        assert token is not None and token.token is not None
        process = ApiProcess(process_env(settings), tmp, free_port(), workers=2)
        try:
            process.start()
            yield process.base_url, token.token
        finally:
            process.stop()
            engine.dispose()


def _statuses(base: str, token: str) -> set[int]:
    """Answers to /v1/me, each request on a fresh connection."""
    seen = set()
    for _ in range(REQUESTS):
        with httpx.Client(base_url=base, timeout=10.0) as http:
            seen.add(http.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code)
    return seen


def _post(base: str, token: str, path: str, body: object = None) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10.0) as http:
        return http.post(path, json=body or {}, headers={"Authorization": f"Bearer {token}"})


def test_a_revoked_token_is_refused_by_every_worker_at_once(two_workers: tuple[str, str]) -> None:
    base, admin = two_workers
    with httpx.Client(base_url=base, timeout=10.0) as http:
        me = http.get("/v1/me", headers={"Authorization": f"Bearer {admin}"}).json()
    issued = _post(base, admin, f"/v1/users/{me['user']['id']}/tokens", {"label": "second"})
    assert issued.status_code == 201, issued.text
    second = issued.json()
    assert _statuses(base, second["token"]) == {200}
    revoked = _post(base, admin, f"/v1/tokens/{second['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert _statuses(base, second["token"]) == {401}
    assert _statuses(base, admin) == {200}  # the other token of the same user still works
