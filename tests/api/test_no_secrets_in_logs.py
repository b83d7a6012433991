"""No secret ever reaches a log line, an error body or the database in the clear: the journey runs on
its own network with every logger at DEBUG (the API, the submitter, the indexer, httpx, web3,
uvicorn), with refused requests on the way, and then the logs, every answer and the database file are
searched for every token, private key, keystore password and signing credential of the run."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from api.client import ApiProblem, RxClient
from node.ledger.journey import JOURNEY_GTIN, sscc
from tests.api.conftest import CREDENTIAL, onboard_consortium, running_network
from tests.api.test_custody import released_batch


def test_the_journey_at_debug_level_leaks_no_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's debug output is captured
    answers: list[str] = []
    with running_network(tmp_path) as net:
        consortium = onboard_consortium(net)
        case = sscc("4098765", 960_000)
        released_batch(consortium, "NS-1", ["NS1A", "NS1B"], [case])
        consortium.as_("cmo").post(
            "/v1/shipments",
            {"shipment_id": "NS-S1", "to_gln": consortium.glns["pharmacy"], "containers": [case]},
        )
        pharmacy = consortium.as_("pharmacy")
        pharmacy.post("/v1/shipments/NS-S1/receive")
        pharmacy.post("/v1/unpack", {"container": case})
        answers.append(json.dumps(pharmacy.post("/v1/verify", {"gtin": JOURNEY_GTIN, "serial": "NS1A"})))
        pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "NS1A"}]})
        # refusals on the way, whose bodies must not echo what was sent
        sponsor_qp = consortium.as_("sponsor", "qp")
        bid = consortium.as_("cmo").get("/v1/batches", lot="NS-1")[0]["batch_id"]
        attempts: list[Callable[[], object]] = [
            lambda: sponsor_qp.post(
                f"/v1/batches/{bid}/recall",
                {
                    "meaning": "recalled",
                    "signature": {"username": "sponsor.qp", "credential": CREDENTIAL + "x"},
                },
            ),
            lambda: pharmacy.post("/v1/dispense", {"units": [{"gtin": JOURNEY_GTIN, "serial": "NS1A"}]}),
        ]
        for attempt in attempts:
            with pytest.raises(ApiProblem) as refused:
                attempt()
            answers.append(json.dumps(refused.value.body))
        stolen = consortium.tokens[("cmo", "operator")][:-2] + "xx"
        answers.append(httpx.get(f"{net.base_url}/v1/me", headers={"Authorization": f"Bearer {stolen}"}).text)
        answers.append(
            RxClient(net.base_url, consortium.tokens[("sponsor", "qp")]).get("/v1/audit").__repr__()
        )

        password = net.settings.keystore_password
        assert password is not None
        keys = [
            Account.decrypt(json.loads(path.read_text()), password.get_secret_value()).hex()
            for path in sorted(net.settings.keystore_dir.glob("*"))
            if path.is_file()
        ]
        assert len(keys) >= 7  # the admin, a key per organisation, the relayer
        secrets = {
            "keystore password": password.get_secret_value(),
            "signing credential": CREDENTIAL,
            "admin token": net.admin_token,
            **{f"token {who}": token for who, token in consortium.tokens.items()},
            **{f"private key {i}": key.removeprefix("0x") for i, key in enumerate(keys)},
            "bad token": stolen,
        }
        database = Path(net.settings.database_url.removeprefix("sqlite:///")).read_bytes()

    logs = caplog.text
    assert len(caplog.records) > 500  # the debug output really was captured
    leaks = [
        f"{name} in {where}"
        for name, secret in secrets.items()
        for where, text in (("logs", logs), ("answers", "\n".join(answers)))
        if secret in text
    ]
    leaks += [f"{name} in the database" for name, secret in secrets.items() if secret.encode() in database]
    assert leaks == []
