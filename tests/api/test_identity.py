"""Secrets and records: keystores are encrypted files, tokens and credentials are stored only as
hashes, the audit log is append-only at the database (SQLite and PostgreSQL) and its hash chain
shows a tampered row."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from api.database import api_engine
from api.edge import audit
from api.edge.rules import rule_slug, status_of
from api.edge.security import hash_credential, hash_token, new_token, verify_credential
from api.routes.admin import _fund
from api.runtime import Runtime
from api.write.keystore import Keystore, KeystoreError
from node.chain import Sender
from node.indexer.pgtemp import TempPostgres
from tests.api.conftest import ApiNet


def test_keystore_is_encrypted_private_and_needs_the_password(tmp_path: Path) -> None:
    store = Keystore(tmp_path, "kek", scrypt_n=2**10)
    account = store.create()
    path = store.path(account.address)
    content = path.read_text()
    assert account.key.hex().removeprefix("0x") not in content
    assert json.loads(content)["crypto"]["kdf"] == "scrypt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keystore(tmp_path, "kek").account(account.address).key == account.key  # a fresh process
    with pytest.raises(KeystoreError):
        Keystore(tmp_path, "wrong").account(account.address)
    with pytest.raises(KeystoreError):
        Keystore(tmp_path, None).account(account.address)
    with pytest.raises(KeystoreError):
        store.account(Account.create().address)


def test_tokens_and_credentials_are_only_stored_hashed(net: ApiNet) -> None:
    token, digest, prefix = new_token()
    assert len(token) > 40 and digest == hash_token(token) and token.startswith(prefix)
    stored = hash_credential("correct horse battery staple")
    assert "correct horse" not in stored
    assert verify_credential("correct horse battery staple", stored)
    assert not verify_credential("correct horse battery stapl", stored)
    assert not verify_credential("x", None) and not verify_credential("x", "md5$abc")
    # The admin token the harness holds appears nowhere in the database, only its hash does.
    with net.engine.connect() as conn:
        rows = conn.execute(text("SELECT token_hash FROM api_tokens")).scalars().all()
    assert hash_token(net.admin_token) in rows and net.admin_token not in rows
    # Read the file in another process: closing a descriptor of a SQLite file in the server's own
    # process would drop SQLite's POSIX locks on it (a documented SQLite pitfall).
    db = Path(net.settings.database_url.removeprefix("sqlite:///"))
    reader = "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())"
    data = subprocess.run([sys.executable, "-c", reader, str(db)], capture_output=True, check=True).stdout
    assert data and net.admin_token.encode() not in data


def _append_only(engine: Engine) -> None:
    entry = audit.append(
        engine, request_id="r1", method="POST", path="/x", action="t", status=202, outcome="accepted"
    )
    audit.append(engine, request_id="r2", method="POST", path="/y", action="t", status=403, outcome="denied")
    assert audit.verify_chain(engine) == (2, None)
    for statement in ("UPDATE api_audit_log SET outcome = 'ok'", "DELETE FROM api_audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    # Someone with the database owner's rights drops the trigger and edits a row: the chain shows it.
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER api_audit_log_no_update"))
        else:
            conn.execute(text("DROP TRIGGER api_audit_log_append_only ON api_audit_log"))
        conn.execute(text("UPDATE api_audit_log SET status = 200 WHERE id = :id"), {"id": entry.id})
    assert audit.verify_chain(engine) == (1, entry.id)


def test_audit_log_is_append_only_on_sqlite(tmp_path: Path) -> None:
    engine = api_engine(f"sqlite:///{tmp_path}/audit.db")
    _append_only(engine)


def test_audit_log_is_append_only_on_postgres(postgres_server: TempPostgres) -> None:
    engine = api_engine(postgres_server.database_url("rx_api_audit"))
    try:
        _append_only(engine)
    finally:
        engine.dispose()


def test_rule_types_follow_the_contract_errors() -> None:
    assert rule_slug("NotHolder") == "not-holder"
    assert rule_slug("BatchNotReleased") == "batch-not-released"
    assert rule_slug("AlreadyDispensed") == "already-dispensed"
    assert (
        status_of("NotHolder"),
        status_of("MissingRole"),
        status_of("UnknownBatch"),
        status_of("InvalidGtin"),
    ) == (
        409,
        403,
        404,
        422,
    )


def test_cli_issues_a_working_token(net: ApiNet) -> None:
    import os

    env = {**os.environ, "RXLEDGER_DATABASE_URL": net.settings.database_url}
    rxledger = Path(sys.executable).parent / "rxledger"
    out = subprocess.run(
        [rxledger, "users", "token", "admin", "--ttl-days", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=net.tmp,
    )
    token = out.stdout.strip().splitlines()[-1]
    assert net.client(token).get("/v1/me")["user"]["role"] == "admin"
    missing = subprocess.run(
        [rxledger, "users", "token", "nobody"], env=env, capture_output=True, text=True, cwd=net.tmp
    )
    assert missing.returncode == 1 and "no user" in missing.stdout


def test_health_reports_the_outbox(net: ApiNet, tmp_path: Path) -> None:
    import time

    import httpx
    from sqlmodel import Session

    from api.health import outbox_status
    from api.models import Operation

    live = httpx.get(f"{net.base_url}/health").json()["outbox"]
    assert live["submitter_alive"] is True  # the API's own submitter holds the lease
    engine = api_engine(f"sqlite:///{tmp_path}/outbox.db")
    problems: list[str] = []
    assert outbox_status(engine, problems).queued == 0 and problems == []
    with Session(engine) as session:
        session.add(
            Operation(
                id="x",
                kind="t",
                user_id=1,
                signing="custodial",
                request_fingerprint="f",
                request="{}",
                created_at=time.time() - 30,
            )
        )
        session.commit()
    status = outbox_status(engine, problems)
    assert status.queued == 1 and not status.submitter_alive and status.oldest_waiting_s is not None
    assert status.oldest_waiting_s >= 30 and problems == [
        "outbox: 1 operations wait and no submitter is running"
    ]


def _append_entries(url: str, n: int) -> None:
    from api.database import api_engine
    from api.edge import audit as audit_log

    engine = api_engine(url)
    for i in range(n):
        audit_log.append(
            engine, request_id=f"mp{i}", method="POST", path="/x", action="x", status=200, outcome="ok"
        )


def test_audit_chain_holds_with_several_api_processes_on_sqlite(tmp_path: Path) -> None:
    """Several API workers append at once: each reads the last hash under the database's write lock,
    so the chain never forks (it did, with a per-process lock only)."""
    import multiprocessing

    url = f"sqlite:///{tmp_path}/audit.db"
    engine = api_engine(url)
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_append_entries, args=(url, 40)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert audit.verify_chain(engine) == (120, None)


def test_funding_a_new_key_survives_losing_the_admin_nonce_race(
    net: ApiNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The submitter and the funding of a new custodial key both sign with the admin key. When the
    other side takes the nonce first (simulated: the first nonce read is stale), the node refuses
    the funding transaction; it must take the next nonce and go through, not answer a 500 (found by
    tests/api/test_schemathesis.py)."""
    runtime = Runtime.create(net.settings, net.engine)
    real_nonce = Sender.nonce
    stale = {"left": 1}

    def nonce(self: Sender) -> int:
        n = real_nonce(self)
        if stale["left"] and n > 0:
            stale["left"] -= 1
            return n - 1  # already used: "nonce too low"
        return n

    monkeypatch.setattr(Sender, "nonce", nonce)
    address = Account.create().address
    _fund(runtime, address)
    assert stale["left"] == 0, "the stale nonce was never offered"
    assert net.w3.eth.get_balance(address) == net.settings.fund_new_keys_wei
