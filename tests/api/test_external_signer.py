"""Non-custodial signing: the organisation keeps its key; the API hands out EIP-712 typed data, the
client signs it, the API checks the signature and relays it through its relayer key. The chain
attributes the action to the organisation's key, not to the relayer."""

from __future__ import annotations

import time

from eth_account import Account
from eth_account.messages import encode_typed_data
from web3.logs import DISCARD

from api.client import ApiProblem
from node.deploy import Deployment
from node.ledger.identifiers import with_check_digit
from tests.api.conftest import Consortium

GLN = with_check_digit("400000800000")
GTIN = with_check_digit("0950600013450")


def sign(key: bytes, typed: dict[str, object]) -> str:
    return "0x" + bytes(Account.sign_message(encode_typed_data(full_message=typed), key).signature).hex()


def test_external_key_signs_and_the_api_relays(consortium: Consortium) -> None:
    net, admin = consortium.net, consortium.net.admin
    admin.post("/v1/relayer", {})
    own_key = Account.create()
    onboarded = admin.post(
        "/v1/organizations",
        {
            "gln": GLN,
            "name": "Self-Custody Sponsor SA",
            "roles": ["sponsor"],
            "key": {"mode": "external", "address": own_key.address},
        },
    )
    assert onboarded["status"] == "succeeded"
    org_id = next(o["id"] for o in admin.get("/v1/organizations") if o["gln"] == GLN)
    user = admin.post(
        f"/v1/organizations/{org_id}/users",
        {"username": "selfcustody.op", "printed_name": "Op", "role": "operator"},
        wait=False,
    )
    client = net.client(user["token"]["token"])

    pending = client.post("/v1/products", {"gtin": GTIN}, wait=False)
    assert pending["status"] == "awaiting_signatures" and pending["signing"] == "external"
    (typed,) = pending["to_sign"]
    assert typed["primaryType"] == "RegisterProduct" and typed["message"]["gtin"] == int(GTIN)

    # A signature by any other key is refused and changes nothing.
    intruder = sign(Account.create().key, typed)
    try:
        client.post(f"/v1/operations/{pending['id']}/signatures", {"signatures": [intruder]}, wait=False)
        raise AssertionError("a foreign signature was accepted")
    except ApiProblem as problem:
        assert problem.status == 422 and problem.type.endswith("invalid-signature")
        assert problem.body["field"] == "signatures[0]"
    assert client.get(f"/v1/operations/{pending['id']}")["status"] == "awaiting_signatures"

    queued = client.post(
        f"/v1/operations/{pending['id']}/signatures", {"signatures": [sign(own_key.key, typed)]}, wait=False
    )
    assert queued["status"] in ("queued", "running", "succeeded")
    deadline = time.monotonic() + 30
    while (done := client.get(f"/v1/operations/{pending['id']}"))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert done["status"] == "succeeded", done

    suite = Deployment.load(net.w3, net.manifest)
    assert suite["BatchRegistry"].functions.productOwner(int(GTIN)).call() == org_id
    tx_hash = done["transactions"][0]["tx_hash"]
    tx = net.w3.eth.get_transaction(tx_hash)
    assert tx["from"] != own_key.address  # the relayer paid and sent it...
    receipt = net.w3.eth.get_transaction_receipt(tx_hash)
    logs = suite["BatchRegistry"].events.ProductRegistered().process_receipt(receipt, errors=DISCARD)
    assert logs[0]["args"]["sponsor"] == org_id  # ...and the organisation's own key is who acted
    assert logs[0]["args"]["signer"] == own_key.address
