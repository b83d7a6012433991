"""The `rxledger` command line (typer): build, devnet, deploy, indexer, audit, status, up, down."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from api.health import Health, collect_health
from api.up import UpError, run_down, run_up, sigterm_as_interrupt
from node.accounts import DEVNET_CHAIN_ID, dev_accounts
from node.besu.cli import network_app
from node.build import ArtifactsOutOfDate, CompileFailed, build_contracts
from node.chain import ChainError, connect
from node.deploy import (
    DeployError,
    ManifestMismatch,
    deploy_suite,
    load_manifest,
    manifest_path,
    verify_manifest,
)
from node.devnet import Devnet, DevnetError
from node.indexer.cli import audit_app, indexer_app
from node.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="rxledger: pharma traceability network")
contracts_app = typer.Typer(no_args_is_help=True, help="Build and check the contract artifacts.")
app.add_typer(contracts_app, name="contracts")
app.add_typer(indexer_app, name="indexer")
app.add_typer(audit_app, name="audit")
app.add_typer(network_app, name="network")
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@app.callback()
def _setup() -> None:
    level = get_settings().log_level
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per devnet RPC otherwise


@contracts_app.command("build")
def contracts_build() -> None:
    """Compile contracts/src into contracts/artifacts with the pinned solc-js."""
    try:
        console.print(build_contracts(quiet=False), end="", highlight=False)
    except CompileFailed as exc:
        raise _fail(str(exc)) from None


@contracts_app.command("check")
def contracts_check() -> None:
    """Recompile and fail unless the committed artifacts are byte-for-byte identical."""
    try:
        build_contracts(check=True)
    except (CompileFailed, ArtifactsOutOfDate) as exc:
        raise _fail(str(exc)) from None
    console.print("artifacts are up to date")


@app.command()
def devnet(
    port: Annotated[
        int | None, typer.Option(help="RPC port (default RXLEDGER_DEVNET_PORT; 0 = any free)")
    ] = None,
    block_time: Annotated[
        float | None, typer.Option(help="Seconds per block (default: mine instantly)")
    ] = None,
    state: Annotated[Path | None, typer.Option(help="Keep the chain in this file across restarts")] = None,
) -> None:
    """Run an Anvil devnet in the foreground until Ctrl-C."""
    settings = get_settings()
    node = Devnet(
        port=settings.devnet_port if port is None else port,
        chain_id=settings.chain_id,
        block_time=block_time if block_time is not None else settings.devnet_block_time,
        state_file=state,
    )
    with sigterm_as_interrupt():
        try:
            node.start()
            console.print(f"devnet on {node.rpc_url} (chain {node.chain_id}); Ctrl-C stops it")
            for i, account in enumerate(dev_accounts(5)):
                console.print(f"  account {i}: {account.address}")
            while node.running:
                time.sleep(0.5)
            raise _fail(f"anvil exited:\n{node.log_tail()}")
        except KeyboardInterrupt:
            pass
        except DevnetError as exc:
            raise _fail(str(exc)) from None
        finally:
            node.stop()


def _deployer(settings: Settings) -> LocalAccount:
    """RXLEDGER_DEPLOYER_KEY when set; on the devnet, Anvil's account 0."""
    if settings.deployer_key is not None:
        try:
            account: LocalAccount = Account.from_key(settings.deployer_key.get_secret_value())
        except (ValueError, TypeError):
            raise _fail("RXLEDGER_DEPLOYER_KEY is not a hex private key") from None
        return account
    if settings.chain_id != DEVNET_CHAIN_ID:
        raise _fail(f"set RXLEDGER_DEPLOYER_KEY: chain {settings.chain_id} is not the devnet")
    return dev_accounts(1)[0]


@app.command()
def deploy(
    force: Annotated[bool, typer.Option(help="Replace an existing manifest for this chain")] = False,
    if_absent: Annotated[
        bool, typer.Option(help="Succeed without deploying when a manifest exists and matches the chain")
    ] = False,
) -> None:
    """Deploy the contract suite to RXLEDGER_RPC_URL and write deployments/<chain-id>.json."""
    settings = get_settings()
    deployer = _deployer(settings)
    try:
        w3 = connect(settings)
        existing = load_manifest(settings.manifest_dir, settings.chain_id)
        if if_absent and existing is not None:
            verify_manifest(w3, existing)  # the chain must hold exactly the recorded code
            console.print(f"already deployed: {manifest_path(settings.manifest_dir, settings.chain_id)}")
            return
        manifest = deploy_suite(w3, deployer, manifest_dir=settings.manifest_dir, force=force)
    except (ChainError, DeployError, ManifestMismatch) as exc:
        raise _fail(str(exc)) from None
    for name, entry in manifest.contracts.items():
        console.print(f"{name:<20} {entry.address}  block {entry.deploy_block}")
    console.print(f"manifest: {manifest_path(settings.manifest_dir, settings.chain_id)}")


admin_app = typer.Typer(no_args_is_help=True, help="The consortium admin on this node's API.")
app.add_typer(admin_app, name="admin")


@admin_app.command("bootstrap")
def admin_bootstrap() -> None:
    """Register the deployer (the contracts' admin) as the API's consortium admin and print its
    first API token, once; a no-op when the admin exists."""
    from api.admin.bootstrap import ensure_admin
    from api.database import api_engine
    from api.runtime import Runtime

    settings = get_settings()
    runtime = Runtime.create(settings, api_engine(settings.database_url))
    token = ensure_admin(runtime, _deployer(settings))
    if token is None or token.token is None:
        console.print("the consortium admin already exists; `rxledger users token admin` issues a token")
        return
    console.print(f"consortium admin token (shown once): {token.token}", highlight=False, soft_wrap=True)


def _render(health: Health) -> None:
    colour = "green" if health.status == "ok" else "red"
    console.print(f"status: [{colour}]{health.status}[/{colour}]")
    chain = health.chain
    console.print(
        f"chain:    reachable={chain.reachable} chain_id={chain.chain_id} head_block={chain.head_block}\n"
        f"database: reachable={health.database.reachable}\n"
        f"indexer:  running={health.indexer.running} checkpoint={health.indexer.checkpoint_block}\n"
        f"outbox:   queued={health.outbox.queued} running={health.outbox.running} "
        f"awaiting_signatures={health.outbox.awaiting_signatures} "
        f"submitter_alive={health.outbox.submitter_alive}"
    )
    if health.contracts:
        table = Table("contract", "address", "code matches")
        for c in health.contracts:
            table.add_row(c.name, c.address, {True: "yes", False: "[red]NO[/red]", None: "?"}[c.code_matches])
        console.print(table)
    for problem in health.problems:
        console.print(f"[red]- {problem}[/red]", highlight=False)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the /health document")] = False,
) -> None:
    """Check chain, contracts, indexer and database; exit code 1 when degraded."""
    health = collect_health(get_settings())
    if as_json:
        print(health.model_dump_json(indent=2))
    else:
        _render(health)
    if health.status != "ok":
        raise typer.Exit(1)


@app.command()
def up() -> None:
    """Devnet (persistent) + contracts + demo data + API, in the foreground until Ctrl-C."""
    try:
        code = run_up(get_settings(), console)
    except (UpError, DevnetError, ChainError, DeployError) as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)


@app.command()
def down() -> None:
    """Stop what `rxledger up` started (found through its pidfile)."""
    raise typer.Exit(run_down(get_settings(), console))


if __name__ == "__main__":
    app()


users_app = typer.Typer(
    no_args_is_help=True, help="The API's users (operator's console, on the node's database)."
)
app.add_typer(users_app, name="users")


@users_app.command("token")
def users_token(
    username: Annotated[str, typer.Argument(help="e.g. admin, or a partner user")],
    ttl_days: Annotated[int | None, typer.Option(help="lifetime; default RXLEDGER_TOKEN_TTL_DAYS")] = None,
    label: Annotated[str, typer.Option(help="a note to recognise the token by")] = "cli",
) -> None:
    """Issue a new API token for a user and print it (once). For a lost token: revoke the old one
    through the API."""
    from sqlalchemy import select
    from sqlmodel import Session, col

    from api.database import api_engine
    from api.models import User
    from api.routes.admin import issue_token
    from api.runtime import Runtime

    settings = get_settings()
    engine = api_engine(settings.database_url)
    with Session(engine) as session:
        user = session.execute(select(User).where(col(User.username) == username)).scalar()
    if user is None or user.id is None:
        raise _fail(f"no user {username!r} in {settings.database_url}")
    token = issue_token(Runtime.create(settings, engine), user.id, label=label, ttl_days=ttl_days)
    console.print(token.token, highlight=False, soft_wrap=True)


@app.command("verify-bundle")
def verify_bundle_command(
    file: Annotated[
        Path, typer.Argument(help="an evidence bundle (GET /v1/provenance/{id}/bundle)", exists=True)
    ],
    rpc: Annotated[str | None, typer.Option(help="a node you trust for block hashes")] = None,
    trusted: Annotated[
        Path | None, typer.Option(help='offline: JSON {"<block number>": "0x<block hash>", ...} you trust')
    ] = None,
) -> None:
    """Check every step of an evidence bundle against block hashes you trust: exit 0 only if all are
    proven."""
    import json

    from rich.table import Table

    from node.evidence.bundle import verify_bundle
    from node.evidence.proofs import RpcError, block_header, header_hash

    if (rpc is None) == (trusted is None):
        raise _fail("give exactly one of --rpc URL and --trusted FILE")
    hashes: dict[int, bytes] = {}
    if trusted is not None:
        raw = json.loads(trusted.read_text())
        hashes = {int(k): bytes.fromhex(str(v).removeprefix("0x")) for k, v in raw.items()}

    def trusted_hash(block: int) -> bytes | None:
        if rpc is None:
            return hashes.get(block)
        if block not in hashes:
            try:
                hashes[block] = header_hash(block_header(rpc, block))
            except RpcError as exc:
                raise _fail(f"cannot read block {block} from {rpc}: {exc}") from None
        return hashes[block]

    try:
        bundle = json.loads(file.read_text())
    except ValueError as exc:
        raise _fail(f"{file} is not JSON: {exc}") from None
    checks = verify_bundle(bundle, trusted_hash)
    table = Table("check", "result", "detail")
    for check in checks:
        table.add_row(check.what, "[green]proven[/]" if check.ok else "[red]NOT PROVEN[/]", check.reason)
    console.print(table)
    failed = [c for c in checks if not c.ok]
    if failed:
        console.print(f"[red]{len(failed)} of {len(checks)} checks failed[/]")
        raise typer.Exit(1)
    against = f"the node {rpc}" if rpc else "the trusted block hashes"
    console.print(f"[green]all {len(checks)} checks proven[/] against {against}")


@app.command("verify-certificate")
def verify_certificate_command(
    file: Annotated[Path, typer.Argument(help="the document to check", exists=True)],
    batch: Annotated[str, typer.Option(help="the batch id (0x...)")],
) -> None:
    """Is this file a certificate anchored for the batch? Read from the chain itself (RXLEDGER_RPC_URL
    and the deployment manifest): by whom, when, with what meaning."""
    import datetime as dt
    import hashlib

    from node.chain import make_web3
    from node.deploy import load_contracts, load_manifest
    from node.ledger.constants import CertificateKind

    settings = get_settings()
    digest = hashlib.sha256(file.read_bytes()).digest()
    w3 = make_web3(settings.rpc_url)
    manifest = load_manifest(settings.manifest_dir, settings.chain_id)
    if manifest is None:
        raise _fail(f"no deployment manifest for chain {settings.chain_id} in {settings.manifest_dir}")
    contracts = load_contracts(w3, manifest)
    batch_id = bytes.fromhex(batch.removeprefix("0x"))
    anchored = contracts["BatchRegistry"].functions.certificates(batch_id).call()
    registry = contracts["ConsortiumRegistry"]
    matches = [c for c in anchored if bytes(c[0]) == digest]
    console.print(f"sha256 {digest.hex()}")
    if not matches:
        console.print(f"[red]not anchored[/] for batch {batch} ({len(anchored)} certificate(s) are)")
        raise typer.Exit(1)
    for cert in matches:
        _document, meaning, signer, org, kind, anchored_at = cert
        gln, _status = registry.functions.organization(int(org)).call()
        when = dt.datetime.fromtimestamp(int(anchored_at), tz=dt.UTC).isoformat()
        text = bytes(meaning).rstrip(b"\0").decode(errors="replace")
        console.print(
            f"[green]anchored[/]: {CertificateKind(int(kind)).name.lower()} by organisation {org} "
            f"(GLN {int(gln):013d}), key {signer}, at {when}, meaning {text!r}"
        )
