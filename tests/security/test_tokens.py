"""Token cases of the attack suite, against the live API: a token works only while it is valid, its
user enabled and its organisation active, and each refusal says which of these failed (401, with
`WWW-Authenticate`), taking effect on the next request."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import update

from api.models import ApiToken
from tests.api.conftest import Consortium

P = "urn:rxledger:problem:"


def me(consortium: Consortium, token: str) -> httpx.Response:
    return httpx.get(f"{consortium.net.base_url}/v1/me", headers={"Authorization": f"Bearer {token}"})


def refused_as(response: httpx.Response, rule: str) -> bool:
    return (
        response.status_code == 401
        and response.headers.get("www-authenticate", "").startswith("Bearer")
        and response.json()["type"] == P + rule
    )


def new_user(consortium: Consortium, org: str, username: str) -> dict[str, object]:
    keys = consortium.as_(org, "key_admin")
    return dict(
        keys.post(
            f"/v1/organizations/{consortium.org_ids[org]}/users",
            {"username": username, "printed_name": "Token Case", "role": "viewer"},
            wait=False,
        )
    )


def test_an_expired_token_is_refused_and_a_fresh_one_of_the_same_user_works(consortium: Consortium) -> None:
    user = new_user(consortium, "distributor", "distributor.tokencase.expiry")
    token = user["token"]
    assert isinstance(token, dict)
    assert me(consortium, str(token["token"])).status_code == 200
    # its lifetime runs out (a day is the shortest one can ask for; the clock is the database's row)
    table = ApiToken.__table__  # type: ignore[attr-defined]
    with consortium.net.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == token["id"]).values(expires_at=time.time() - 1))
    assert refused_as(me(consortium, str(token["token"])), "token-expired")
    keys = consortium.as_("distributor", "key_admin")
    fresh = keys.post(f"/v1/users/{user['user']['id']}/tokens", {"label": "again"}, wait=False)  # type: ignore[index]
    assert me(consortium, fresh["token"]).status_code == 200


def test_a_disabled_users_tokens_stop_at_once(consortium: Consortium) -> None:
    user = new_user(consortium, "3pl", "3pl.tokencase.disabled")
    token = user["token"]
    assert isinstance(token, dict)
    assert me(consortium, str(token["token"])).status_code == 200
    consortium.as_("3pl", "key_admin").post(f"/v1/users/{user['user']['id']}/disable", wait=False)  # type: ignore[index]
    assert refused_as(me(consortium, str(token["token"])), "user-disabled")


def test_garbage_and_lookalike_tokens_are_invalid_not_errors(consortium: Consortium) -> None:
    real = consortium.tokens[("pharmacy", "viewer")]
    guesses = [
        "rxl_" + "0" * 43,
        real[:-1],  # one character short
        real + "x",
        real.swapcase(),
        real[:-1] + "\u0430",  # the last character a Cyrillic a: not a token character
        "a" * 5000,
    ]
    assert real not in guesses
    for guess in guesses:
        answer = httpx.get(
            f"{consortium.net.base_url}/v1/me",
            headers={b"Authorization": f"Bearer {guess}".encode()},  # bytes: httpx sends non-ASCII as is
        )
        assert answer.status_code == 401, (guess[:20], answer.text)
        assert answer.headers.get("www-authenticate", "").startswith("Bearer")
