"""Issue 18, items 2 and 3: the brake on failed authentications keys on an address the client cannot
choose, and brakes only failures.

Item 2: 200 bad tokens, each with another X-Forwarded-For, were never braked, because uvicorn
believes that header from 127.0.0.1 by default (--proxy-headers). Both ways the API is started
(docker-compose.yml's command line, `rxledger up`) are run here as the real uvicorn and must brake
them; the header counts only from a proxy named in RXLEDGER_TRUSTED_PROXIES (api/edge/clientaddr.py).

Item 3: while an address was braked, a valid token from it was refused too (a colleague behind the
same NAT as a scanner was locked out). Now a valid token is always served; bad tokens from a braked
address still get 429 with Retry-After, which does not say why they failed."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.testclient import TestClient

from api.app import create_app
from api.edge.clientaddr import UNKNOWN, resolve, trusted_networks
from api.edge.throttle import FailureThrottle
from node.besu.compose import compose
from node.devnet import _pdeathsig_preexec, free_port
from node.settings import Settings
from tests.api.conftest import ApiNet, api_settings

P = "urn:rxledger:problem:"
LIMIT = 5  # RXLEDGER_AUTH_FAILURE_LIMIT for these tests
SPOOFED = [f"203.0.113.{i}" for i in range(1, 60)]  # TEST-NET-3: a different address each request


def bad(i: int, forwarded_for: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer rxl_guess{i}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


def first_braked(send: Callable[[dict[str, str]], httpx.Response], count: int = 3 * LIMIT) -> int | None:
    """Index of the first 429 among `count` bad tokens, each with its own X-Forwarded-For."""
    for i in range(count):
        answer = send(bad(i, SPOOFED[i]))
        if answer.status_code == 429:
            assert answer.json()["type"] == P + "too-many-failed-authentications"
            assert int(answer.headers["retry-after"]) >= 1
            return i
        assert answer.status_code == 401, answer.text
    return None


# ---------------------------------------------------------------- live: the real uvicorn, item 2


def compose_command(port: int) -> list[str]:
    """docker-compose.yml's API command line, on 127.0.0.1 and `port` instead of 0.0.0.0:8000."""
    command: list[str] = list(compose()["services"]["api"]["command"])
    assert command[0] == "uvicorn"
    command[0] = str(Path(sys.executable).parent / "uvicorn")
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    return command


@contextlib.contextmanager
def compose_api(net: ApiNet, tmp: Path) -> Iterator[str]:
    """The API as docker-compose.yml starts it, in its own process with a database of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RXLEDGER_")}
    env.pop("FORWARDED_ALLOW_IPS", None)  # uvicorn's own default: trust 127.0.0.1
    env.update(
        RXLEDGER_RPC_URL=net.settings.rpc_url,
        RXLEDGER_CHAIN_ID=str(net.settings.chain_id),
        RXLEDGER_DATABASE_URL=f"sqlite:///{tmp}/api.db",
        RXLEDGER_MANIFEST_DIR=str(net.settings.manifest_dir),
        RXLEDGER_KEYSTORE_DIR=str(tmp / "keystore"),
        RXLEDGER_DOCUMENTS_DIR=str(tmp / "documents"),
        RXLEDGER_DATA_DIR=str(tmp),
        RXLEDGER_AUTH_FAILURE_LIMIT=str(LIMIT),
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*compose_command(port), "--log-level", "warning"],
            env=env,
            cwd=tmp,  # no .env here: only the variables above
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig_preexec(),
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"the API exited:\n{log.read_text(errors='replace')[-3000:]}"
            try:
                httpx.get(base + "/v1/me", timeout=2.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not answer"
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def up_api(settings: Settings) -> Iterator[str]:
    """The API under the uvicorn configuration `rxledger up` uses, in a thread, on a free port."""
    from api.up import server_config  # the configuration under test (absent before the fix)

    server = uvicorn.Server(server_config(create_app(settings, run_submitter=False), settings))
    thread = threading.Thread(target=server.run, name="test-api-up", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_the_compose_command_brakes_bad_tokens_whatever_x_forwarded_for_says(
    net: ApiNet, tmp_path: Path
) -> None:
    with compose_api(net, tmp_path) as base, httpx.Client(base_url=base) as client:
        braked = first_braked(lambda headers: client.get("/v1/me", headers=headers))
    assert braked == LIMIT  # LIMIT 401s, then 429: every request came from 127.0.0.1


def test_rxledger_up_brakes_bad_tokens_whatever_x_forwarded_for_says(net: ApiNet, tmp_path: Path) -> None:
    settings = api_settings(net.tmp, net.settings.rpc_url, api_port=0, auth_failure_limit=LIMIT)
    with up_api(settings) as base, httpx.Client(base_url=base) as client:
        braked = first_braked(lambda headers: client.get("/v1/me", headers=headers))
        assert braked == LIMIT
        # and the valid token from the braked address is served (item 3, through the real server)
        admin = client.get("/v1/me", headers={"Authorization": f"Bearer {net.admin_token}"})
        assert admin.status_code == 200, admin.text


# ------------------------------------------- the app with a chosen peer address (TestClient)


@contextlib.contextmanager
def app_with(net: ApiNet, **overrides: object) -> Iterator[FastAPI]:
    """The API on the test network's database, without a server: TestClient sets the peer."""
    settings = api_settings(net.tmp, net.settings.rpc_url, auth_failure_limit=LIMIT, **overrides)
    app = create_app(settings, run_submitter=False)
    try:
        yield app
    finally:
        app.state.engine.dispose()


def peer(app: FastAPI, host: str) -> TestClient:
    return TestClient(app, client=(host, 40000), raise_server_exceptions=False)


def test_without_trusted_proxies_x_forwarded_for_is_ignored(net: ApiNet) -> None:
    with app_with(net) as app:
        client = peer(app, "127.0.0.1")
        assert first_braked(lambda headers: client.get("/v1/me", headers=headers)) == LIMIT
        other = peer(app, "192.0.2.10").get("/v1/me", headers=bad(99))  # another peer: its own count
        assert other.status_code == 401


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_alone(net: ApiNet) -> None:
    with app_with(net, trusted_proxies=["127.0.0.1"]) as app:
        proxy = peer(app, "127.0.0.1")
        assert first_braked(lambda headers: proxy.get("/v1/me", headers=headers)) is None
        # one forwarded client, again and again: braked at the limit
        for i in range(LIMIT):
            assert proxy.get("/v1/me", headers=bad(i, "198.51.100.1")).status_code == 401
        braked = proxy.get("/v1/me", headers=bad(LIMIT, "198.51.100.1"))
        assert braked.status_code == 429 and "retry-after" in braked.headers
        # the left-most entries are the client's to choose: only the hop the proxy saw counts
        chained = proxy.get("/v1/me", headers=bad(0, "10.9.9.9, 198.51.100.1"))
        assert chained.status_code == 429
        # a peer that is not the proxy is its own client, whatever it forwards
        direct = peer(app, "192.0.2.20")
        for i in range(LIMIT):
            assert direct.get("/v1/me", headers=bad(i, SPOOFED[i])).status_code == 401
        assert direct.get("/v1/me", headers=bad(LIMIT, "203.0.113.250")).status_code == 429


def test_a_valid_token_is_served_from_a_braked_address(net: ApiNet) -> None:
    admin_auth = {"Authorization": f"Bearer {net.admin_token}"}
    with app_with(net) as app:
        elsewhere = peer(app, "192.0.2.30")
        me = elsewhere.get("/v1/me", headers=admin_auth).json()
        issued = elsewhere.post(
            f"/v1/users/{me['user']['id']}/tokens", json={"label": "t18"}, headers=admin_auth
        )
        assert issued.status_code == 201, issued.text
        revoked = issued.json()
        assert elsewhere.post(f"/v1/tokens/{revoked['id']}/revoke", headers=admin_auth).status_code == 200

        client = peer(app, "192.0.2.31")
        for i in range(LIMIT):
            assert client.get("/v1/me", headers=bad(i)).status_code == 401
        assert client.get("/v1/me", headers=bad(LIMIT)).status_code == 429
        for _ in range(3):
            served = client.get("/v1/me", headers=admin_auth)
            assert served.status_code == 200, served.text
        # serving it did not lift the brake, and a braked client is not told why a token fails:
        # a revoked one gets the same 429 as a guess (only "valid or not" is learnt)
        again = client.get("/v1/me", headers=bad(LIMIT + 1))
        gone = client.get("/v1/me", headers={"Authorization": f"Bearer {revoked['token']}"})
        assert (again.status_code, gone.status_code) == (429, 429)
        assert gone.json()["type"] == again.json()["type"] == P + "too-many-failed-authentications"
        # no token at all is no guess: 401 as ever, braked or not
        assert client.get("/v1/me").status_code == 401


# ------------------------------------------------------------------------ units: the resolver


def test_an_untrusted_peer_is_the_client_whatever_the_header() -> None:
    assert resolve("192.0.2.1", ["203.0.113.9"], trusted_networks(())) == "192.0.2.1"
    assert resolve("127.0.0.1", ["203.0.113.9"], trusted_networks(())) == "127.0.0.1"
    assert resolve("192.0.2.1", ["203.0.113.9"], trusted_networks(("10.0.0.0/8",))) == "192.0.2.1"
    assert resolve(None, ["203.0.113.9"], trusted_networks(("0.0.0.0/0",))) == UNKNOWN
    assert resolve("testclient", ["203.0.113.9"], trusted_networks(("0.0.0.0/0",))) == "testclient"


def test_a_trusted_peer_forwards_the_right_most_untrusted_hop() -> None:
    proxies = trusted_networks(("10.0.0.5", "10.1.0.0/16", "2001:db8:1::/48"))
    assert resolve("10.0.0.5", ["203.0.113.9"], proxies) == "203.0.113.9"
    assert resolve("10.1.2.3", ["203.0.113.9"], proxies) == "203.0.113.9"  # inside the CIDR
    assert resolve("10.2.0.1", ["203.0.113.9"], proxies) == "10.2.0.1"  # outside it
    # multi-hop: client, (spoofed entries), proxy chain; the hops the proxies added are skipped
    assert resolve("10.0.0.5", ["1.1.1.1, 203.0.113.9, 10.1.0.7"], proxies) == "203.0.113.9"
    assert resolve("10.0.0.5", ["1.1.1.1, 203.0.113.9", "10.1.0.7"], proxies) == "203.0.113.9"  # 2 headers
    # IPv6 peers and entries, bracketed or with ports
    assert resolve("2001:db8:1::2", ["2001:db8:ff::1"], proxies) == "2001:db8:ff::1"
    assert resolve("10.0.0.5", ["[2001:db8:ff::1]:4711"], proxies) == "2001:db8:ff::1"
    assert resolve("10.0.0.5", ["203.0.113.9:4711"], proxies) == "203.0.113.9"
    assert resolve("10.0.0.5", ["::ffff:203.0.113.9"], proxies) == "203.0.113.9"  # one client, one key
    assert resolve("::ffff:10.0.0.5", ["203.0.113.9"], proxies) == "203.0.113.9"


def test_garbage_entries_are_skipped_and_nothing_forwarded_is_the_peer() -> None:
    proxies = trusted_networks(("10.0.0.5",))
    assert resolve("10.0.0.5", ["203.0.113.9, unknown, not-an-ip, 999.1.1.1, ,"], proxies) == "203.0.113.9"
    assert resolve("10.0.0.5", ["junk"], proxies) == "10.0.0.5"
    assert resolve("10.0.0.5", [], proxies) == "10.0.0.5"
    assert resolve("10.0.0.5", ["10.0.0.5, 10.0.0.5"], proxies) == "10.0.0.5"  # only proxies: the farthest


def test_trusted_proxies_are_parsed_once_and_bad_entries_trust_nothing() -> None:
    assert trusted_networks(("10.0.0.5", "10.1.0.0/16")) is trusted_networks(("10.0.0.5", "10.1.0.0/16"))
    proxies = trusted_networks(("not-a-network", "10.1.0.0/16", "300.0.0.0/8"))
    assert [str(n) for n in proxies] == ["10.1.0.0/16"]
    assert resolve("10.1.0.1", ["203.0.113.9"], proxies) == "203.0.113.9"


def test_the_throttle_keeps_a_failing_client_braked_in_bounded_memory() -> None:
    throttle = FailureThrottle(limit=3, window_seconds=60)
    assert [throttle.fail("a") for _ in range(3)] == [None, None, None]
    for _ in range(100):
        wait = throttle.fail("a")
        assert wait is not None and 0 < wait <= 60
    assert len(throttle._failures["a"]) == 3
    assert throttle.fail("b") is None  # per client


def test_a_trusted_cidr_from_the_settings_forwards_each_client(net: ApiNet) -> None:
    with app_with(net, trusted_proxies=["127.0.0.0/8"]) as app:
        proxy = peer(app, "127.0.0.2")
        for i in range(LIMIT):
            assert proxy.get("/v1/me", headers=bad(i, "198.51.100.77")).status_code == 401
        assert proxy.get("/v1/me", headers=bad(0, "198.51.100.77")).status_code == 429
        assert proxy.get("/v1/me", headers=bad(0, "198.51.100.78")).status_code == 401
