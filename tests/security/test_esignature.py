"""Issue item 4: e-signature guessing is limited (21 CFR 11.300(d)). A penetration test sent 72 wrong
signing credentials in a row with a valid QP token, all answered 401 and nothing else happened.

Now every refused attempt counts against the token's owner (also when the username typed is someone
else's), a good signature resets the count, and at RXLEDGER_SIGNATURE_FAILURE_LIMIT the signature
locks: 423 `signature-locked`, even for the right credential, until a key admin of the user's
organisation (or the consortium admin) unlocks it. Locking raises a SIGNATURE_LOCKED alert for the
organisation's key admins; the audit row of each attempt says who tried, the username typed and the
count, never the credential.

Each test locks a QP of its own (made here through the sponsor's key admin): the consortium is shared
by the whole package, and its sponsor QP must keep signing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from api.client import RxClient
from tests.api.conftest import CREDENTIAL, Consortium
from tests.api.test_custody import released_batch

P = "urn:rxledger:problem:"
WRONG = "not the signing credential, guess 17"


class Signer:
    """A QP of the sponsor made for one test: its user id, username and token."""

    def __init__(self, consortium: Consortium, username: str) -> None:
        created = consortium.as_("sponsor", "key_admin").post(
            f"/v1/organizations/{consortium.org_ids['sponsor']}/users",
            {"username": username, "printed_name": username.title(), "role": "qp", "credential": CREDENTIAL},
            wait=False,
        )
        self.consortium = consortium
        self.id: int = created["user"]["id"]
        self.username = username
        self.token: str = created["token"]["token"]

    def attempt(self, batch: str, username: str, credential: str, action: str = "suspend") -> httpx.Response:
        body = {
            "meaning": f"{action} (e-signature test)",
            "signature": {"username": username, "credential": credential},
        }
        return httpx.post(
            f"{self.consortium.net.base_url}/v1/batches/{batch}/{action}",
            json=body,
            params={"wait": "true"},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )

    def signs(self, batch: str) -> None:
        """Suspend and unsuspend with the right credential: both succeed, the batch is released again."""
        client = RxClient(self.consortium.net.base_url, self.token)
        for action in ("suspend", "unsuspend"):
            body = {"meaning": f"{action} (e-signature test)", "signature": self.signature()}
            assert client.post(f"/v1/batches/{batch}/{action}", body)["status"] == "succeeded"

    def signature(self) -> dict[str, str]:
        return {"username": self.username, "credential": CREDENTIAL}

    def row(self) -> dict[str, Any]:
        """The user as the organisation's user listing shows them."""
        users = self.consortium.as_("sponsor", "key_admin").get(
            f"/v1/organizations/{self.consortium.org_ids['sponsor']}/users"
        )
        found: dict[str, Any] = next(u for u in users if u["id"] == self.id)
        return found


@pytest.fixture(scope="module")
def batch(consortium: Consortium) -> str:
    return released_batch(consortium, "ES-1", ["ES1A", "ES1B"], [])


@pytest.fixture(scope="module")
def limit(consortium: Consortium) -> int:
    return consortium.net.settings.signature_failure_limit


def refused(response: httpx.Response, status: int, rule: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == P + rule and body["field"] == "signature", body
    return body


def signature_rows(consortium: Consortium, user_id: int) -> list[dict[str, Any]]:
    """The audit rows of the user's signature attempts, oldest first, each with its parsed detail."""
    rows = consortium.as_("sponsor", "key_admin").get("/v1/audit", limit=1000)
    mine = [r for r in rows if r["user_id"] == user_id and "/v1/batches/" in r["path"]]
    for r in mine:
        r["signature"] = json.loads(r["detail"])["signature"]
    return sorted(mine, key=lambda r: r["id"])


def alerts_about(client: RxClient, user_id: int) -> list[dict[str, Any]]:
    return [a for a in client.get("/v1/alerts", code="SIGNATURE_LOCKED") if a["subject"] == f"user:{user_id}"]


def test_fewer_wrong_credentials_than_the_limit_then_the_right_one_signs_and_resets(
    consortium: Consortium, batch: str, limit: int
) -> None:
    qp = Signer(consortium, "es.reset.qp")
    for _ in range(2):
        for _ in range(limit - 1):
            refused(qp.attempt(batch, qp.username, WRONG), 401, "signature-credential-invalid")
        assert (qp.row()["signature_failures"], qp.row()["signature_locked"]) == (limit - 1, False)
        qp.signs(batch)  # the count went back to 0: limit - 1 more wrong ones lock nothing
        assert (qp.row()["signature_failures"], qp.row()["signature_locked"]) == (0, False)


def test_the_limit_locks_the_signature_raises_an_alert_and_a_key_admin_unlocks_it(
    consortium: Consortium, batch: str, limit: int
) -> None:
    qp = Signer(consortium, "es.lock.qp")
    for _ in range(limit - 1):
        refused(qp.attempt(batch, qp.username, WRONG), 401, "signature-credential-invalid")
    refused(qp.attempt(batch, qp.username, WRONG), 423, "signature-locked")  # the limit-th locks
    # locked: the right credential is refused too, and nothing is signed
    locked = refused(qp.attempt(batch, qp.username, CREDENTIAL), 423, "signature-locked")
    assert "key admin" in locked["detail"]
    assert consortium.as_("sponsor").get(f"/v1/batches/{batch}")["status"] == "released"
    row = qp.row()
    assert row["signature_locked"] is True and row["signature_locked_at"] is not None
    assert row["signature_failures"] == limit + 1  # the refused right one counts as well

    # the notice to security: an alert for the organisation's key admins, not for the signer
    key_admin = consortium.as_("sponsor", "key_admin")
    (alert,) = alerts_about(key_admin, qp.id)
    assert alert["status"] == "open" and alert["sponsor_org"] == consortium.org_ids["sponsor"]
    assert alert["detail"]["username"] == qp.username and alert["detail"]["typed_username"] == qp.username
    assert alert["detail"]["failures"] == limit and alert["detail"]["limit"] == limit
    assert alerts_about(RxClient(consortium.net.base_url, qp.token), qp.id) == []
    assert alerts_about(consortium.as_("sponsor"), qp.id) == []

    # the audit trail: who, the username typed, the count, which attempt locked; never a credential
    rows = signature_rows(consortium, qp.id)
    assert [r["status"] for r in rows] == [401] * (limit - 1) + [423, 423]
    details = [r["signature"] for r in rows]
    assert [d["failures"] for d in details] == list(range(1, limit + 2))
    assert [d["locked_now"] for d in details] == [False] * (limit - 1) + [True, False]
    assert all(d["user_id"] == qp.id and d["username"] == qp.username for d in details)
    assert all(d["typed_username"] == qp.username and d["typed_username_matches"] for d in details)
    assert [d["outcome"] for d in details] == ["wrong-credential"] * (limit - 1) + ["locked", "locked"]
    everything = json.dumps(key_admin.get("/v1/audit", limit=1000))
    assert WRONG not in everything and CREDENTIAL not in everything

    # another organisation's key admin does not find the user; the sponsor's key admin unlocks
    outsider = httpx.post(
        f"{consortium.net.base_url}/v1/users/{qp.id}/unlock-signature",
        headers={"Authorization": f"Bearer {consortium.tokens[('cmo', 'key_admin')]}"},
    )
    assert (outsider.status_code, outsider.json()["type"]) == (404, P + "unknown-user")
    assert qp.row()["signature_locked"] is True
    unlocked = key_admin.post(f"/v1/users/{qp.id}/unlock-signature", wait=False)
    assert unlocked["signature_locked"] is False and unlocked["signature_failures"] == 0
    (closed,) = [a for a in key_admin.get("/v1/alerts", status="closed") if a["subject"] == f"user:{qp.id}"]
    assert closed["code"] == "SIGNATURE_LOCKED" and closed["handled_by_org"] == consortium.org_ids["sponsor"]
    unlock_row = next(
        r for r in key_admin.get("/v1/audit", limit=50) if r["path"] == f"/v1/users/{qp.id}/unlock-signature"
    )
    assert (
        unlock_row["status"] == 200
        and unlock_row["username"] == consortium.usernames[("sponsor", "key_admin")]
    )
    assert json.loads(unlock_row["detail"])["unlock_signature"]["failures"] == limit + 1
    qp.signs(batch)


def test_parallel_wrong_credentials_all_count(consortium: Consortium, batch: str, limit: int) -> None:
    qp = Signer(consortium, "es.parallel.qp")
    attempts = 2 * limit
    with ThreadPoolExecutor(max_workers=attempts) as pool:
        answers = list(pool.map(lambda _: qp.attempt(batch, qp.username, WRONG), range(attempts)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {401, 423} and statuses.count(423) >= attempts - limit + 1, statuses
    row = qp.row()
    assert row["signature_locked"] is True and row["signature_failures"] == attempts
    details = [r["signature"] for r in signature_rows(consortium, qp.id)]
    assert sorted(d["failures"] for d in details) == list(range(1, attempts + 1))
    assert sum(d["locked_now"] for d in details) == 1  # exactly one attempt locked
    (alert,) = alerts_about(consortium.as_("sponsor", "key_admin"), qp.id)
    assert alert["count"] == 1
    refused(qp.attempt(batch, qp.username, CREDENTIAL), 423, "signature-locked")
    # the consortium admin may unlock any organisation's user
    assert (
        consortium.net.admin.post(f"/v1/users/{qp.id}/unlock-signature", wait=False)["signature_locked"]
        is False
    )
    qp.signs(batch)


def test_another_users_username_counts_against_the_token_owner_and_reveals_nothing(
    consortium: Consortium, batch: str, limit: int
) -> None:
    attacker, victim = Signer(consortium, "es.imp.attacker"), Signer(consortium, "es.imp.victim")
    # the victim's username with the victim's (right) credential, signed with the attacker's token
    existing = refused(
        attacker.attempt(batch, victim.username, CREDENTIAL), 401, "signature-credential-invalid"
    )
    nobody = refused(
        attacker.attempt(batch, "es.imp.nobody", CREDENTIAL), 401, "signature-credential-invalid"
    )
    assert existing == nobody  # word for word: nothing tells whether the typed username exists
    assert attacker.row()["signature_failures"] == 2 and victim.row()["signature_failures"] == 0
    for _ in range(limit - 2):
        attacker.attempt(batch, victim.username, WRONG)
    assert attacker.row()["signature_locked"] is True
    assert (victim.row()["signature_locked"], victim.row()["signature_failures"]) == (False, 0)
    details = [r["signature"] for r in signature_rows(consortium, attacker.id)]
    assert [d["typed_username"] for d in details] == [victim.username, "es.imp.nobody"] + [
        victim.username
    ] * (limit - 2)
    assert not any(d["typed_username_matches"] for d in details)
    assert all(d["user_id"] == attacker.id and d["username"] == attacker.username for d in details)
    assert details[-1]["locked_now"] is True and details[-1]["failures"] == limit
    (alert,) = alerts_about(consortium.as_("sponsor", "key_admin"), attacker.id)
    assert alert["detail"]["username"] == attacker.username
    assert alert["detail"]["typed_username"] == victim.username
    assert alerts_about(consortium.as_("sponsor", "key_admin"), victim.id) == []
    # the locked attacker cannot sign even as themselves; the victim still can
    refused(attacker.attempt(batch, attacker.username, CREDENTIAL), 423, "signature-locked")
    victim.signs(batch)
