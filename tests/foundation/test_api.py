"""The API: /health against a live devnet and when things are down; RFC 9457 error bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Query
from fastapi.testclient import TestClient
from web3 import Web3

from api.app import create_app
from api.edge.problems import PROBLEM_JSON, Problem
from node.deploy import Deployment
from node.devnet import Devnet, free_port
from node.indexer.database import read_model_engine
from node.indexer.follower import Indexer
from tests.foundation.conftest import make_settings


def get_health(settings: Any) -> tuple[int, dict[str, Any]]:
    with TestClient(create_app(settings)) as client:
        response = client.get("/health")
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


def test_health_ok_against_live_devnet(
    tmp_path: Path, devnet: Devnet, w3: Web3, deployed: Deployment, manifest_dir: Path
) -> None:
    settings = make_settings(tmp_path, rpc_url=devnet.rpc_url, manifest_dir=manifest_dir)
    Indexer(read_model_engine(settings.database_url), w3, deployed.manifest).sync()
    status, body = get_health(settings)
    assert status == 200, body
    assert body["status"] == "ok" and body["problems"] == []
    assert body["chain"]["reachable"] is True
    assert body["chain"]["chain_id"] == 31337
    assert body["chain"]["head_block"] == w3.eth.block_number
    assert body["contracts"] == [
        {"name": name, "address": entry.address, "code_matches": True}
        for name, entry in deployed.manifest.contracts.items()
    ]
    assert body["indexer"] == {"checkpoint_block": w3.eth.block_number, "lag_blocks": 0, "running": True}
    assert body["database"] == {"reachable": True}
    assert (tmp_path / "var" / "rxledger.db").exists()  # sqlite dir created, database opened


def test_health_degraded_until_the_indexer_has_run(
    tmp_path: Path, devnet: Devnet, w3: Web3, deployed: Deployment, manifest_dir: Path
) -> None:
    settings = make_settings(tmp_path, rpc_url=devnet.rpc_url, manifest_dir=manifest_dir)
    status, body = get_health(settings)
    assert status == 503
    assert body["indexer"] == {"checkpoint_block": None, "lag_blocks": None, "running": False}
    # the API creates the schemas at start; the indexer has written nothing yet
    assert any(p.startswith("indexer: nothing indexed yet") for p in body["problems"])
    indexer = Indexer(read_model_engine(settings.database_url), w3, deployed.manifest)
    indexer.sync()
    assert get_health(settings)[0] == 200
    devnet.mine(60)  # the chain moves on while the indexer is stopped
    status, body = get_health(settings)
    assert status == 503 and body["indexer"]["lag_blocks"] == 60
    assert "indexer: 60 blocks behind the head" in body["problems"]


def test_health_degraded_when_chain_is_down(tmp_path: Path, manifest_dir: Path, deployed: Deployment) -> None:
    settings = make_settings(tmp_path, rpc_url=f"http://127.0.0.1:{free_port()}", manifest_dir=manifest_dir)
    status, body = get_health(settings)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["chain"] == {"reachable": False, "chain_id": None, "head_block": None}
    assert [c["code_matches"] for c in body["contracts"]] == [None] * len(deployed.contracts)
    assert any("cannot reach the chain" in p for p in body["problems"])
    assert body["database"] == {"reachable": True}


def test_health_degraded_on_wrong_chain(tmp_path: Path, manifest_dir: Path) -> None:
    with Devnet(chain_id=1337) as other:
        status, body = get_health(make_settings(tmp_path, rpc_url=other.rpc_url, manifest_dir=manifest_dir))
    assert status == 503
    assert body["chain"]["reachable"] is True and body["chain"]["chain_id"] == 1337


def test_health_degraded_on_code_mismatch(
    tmp_path: Path, devnet: Devnet, deployed: Deployment, manifest_dir: Path, chain_snapshot: str
) -> None:
    devnet.rpc("anvil_setCode", [deployed.manifest.contracts["CustodyLedger"].address, "0x00"])
    status, body = get_health(make_settings(tmp_path, rpc_url=devnet.rpc_url, manifest_dir=manifest_dir))
    assert status == 503
    matches = {c["name"]: c["code_matches"] for c in body["contracts"]}
    assert matches == {"ConsortiumRegistry": True, "BatchRegistry": True, "CustodyLedger": False}


def test_health_degraded_without_manifest(tmp_path: Path, devnet: Devnet) -> None:
    status, body = get_health(make_settings(tmp_path, rpc_url=devnet.rpc_url))
    assert status == 503
    assert body["contracts"] == []
    assert any("no deployment manifest" in p for p in body["problems"])


def test_health_degraded_when_database_is_down(tmp_path: Path, devnet: Devnet, manifest_dir: Path) -> None:
    url = f"postgresql://rx@127.0.0.1:{free_port()}/rx"
    status, body = get_health(
        make_settings(tmp_path, rpc_url=devnet.rpc_url, manifest_dir=manifest_dir, database_url=url)
    )
    assert status == 503
    assert body["database"] == {"reachable": False}
    assert body["chain"]["reachable"] is True


# -- problem details -----------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(make_settings(tmp_path, rpc_url=f"http://127.0.0.1:{free_port()}"))

    @app.get("/_test/items")
    def items(limit: Annotated[int, Query(ge=1, le=100)]) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/_test/problem")
    def problem() -> None:
        raise Problem(409, "Batch already released", detail="batch LOT1 was released", batch_id="0xab")

    @app.get("/_test/crash")
    def crash() -> None:
        raise RuntimeError("secret internals")

    return TestClient(app, raise_server_exceptions=False)


def test_root_redirects_to_the_pages_and_the_docs_are_served(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/ui/"
    assert client.get("/ui/").status_code == 200
    assert client.get("/docs").status_code == 200


def test_validation_error_names_field_and_rule(client: TestClient) -> None:
    response = client.get("/_test/items", params={"limit": 0})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 422 and body["title"] == "Request validation failed"
    assert body["errors"] == [
        {
            "field": "query.limit",
            "rule": "greater_than_equal",
            "message": "Input should be greater than or equal to 1",
        }
    ]
    assert "query.limit" in body["detail"] and "greater_than_equal" in body["detail"]
    missing = client.get("/_test/items").json()
    assert missing["errors"][0]["field"] == "query.limit" and missing["errors"][0]["rule"] == "missing"


def test_http_errors_are_problems(client: TestClient) -> None:
    not_found = client.get("/nope")
    assert not_found.status_code == 404
    assert not_found.headers["content-type"] == PROBLEM_JSON
    assert not_found.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "instance": "/nope",
    }
    wrong_method = client.post("/health")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET"
    assert wrong_method.json()["title"] == "Method Not Allowed"


def test_raised_problem_keeps_extension_members(client: TestClient) -> None:
    response = client.get("/_test/problem")
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Batch already released",
        "status": 409,
        "detail": "batch LOT1 was released",
        "batch_id": "0xab",
    }


def test_unhandled_error_is_a_500_problem_without_internals(client: TestClient) -> None:
    response = client.get("/_test/crash")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["title"] == "Internal Server Error"
    assert "secret" not in response.text
