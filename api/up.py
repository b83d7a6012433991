"""`rxledger up` / `rxledger down`: the whole local network in one foreground process.

`up` owns everything it starts (Anvil as a child that dies with it, the indexer in a thread, the API
in-process), records itself in a pidfile so `down` can stop it from another shell, and cleans up in a
`finally`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from rich.console import Console

from api.admin.bootstrap import ensure_admin
from api.admin.demo import seed_demo_via_api
from api.app import create_app
from api.database import api_engine
from api.health import collect_health
from api.procs import UpRecord, alive, process_start_time, terminate
from api.routes.admin import TokenOut
from api.runtime import Runtime
from node.accounts import dev_accounts
from node.chain import connect
from node.deploy import ManifestMismatch, ensure_deployed, manifest_path
from node.devnet import Devnet
from node.indexer.follower import Indexer
from node.settings import Settings


class UpError(RuntimeError):
    pass


def pidfile_path(settings: Settings) -> Path:
    return settings.data_dir / "up.pid"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (from `down`, systemd, docker) like Ctrl-C, so `finally` blocks run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


DEVNET_KEYSTORE_PASSWORD = "rxledger-devnet-keystore"


def devnet_settings(settings: Settings, rpc_url: str) -> Settings:
    """`up` is a devnet: a known keystore password unless one is set, cheap keystore encryption,
    and gas money for new keys."""
    update: dict[str, object] = {
        "rpc_url": rpc_url,
        "fund_new_keys_wei": settings.fund_new_keys_wei or 10**20,
    }
    if settings.keystore_password is None:
        update["keystore_password"] = SecretStr(DEVNET_KEYSTORE_PASSWORD)
        update["keystore_scrypt_n"] = 2**12
    return settings.model_copy(update=update)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class _Watcher(threading.Thread):
    """Seeds the demo through the API once it is up (new network), announces where to look, then
    watches Anvil and stops the API if it dies."""

    def __init__(
        self,
        server: uvicorn.Server,
        devnet: Devnet,
        settings: Settings,
        console: Console,
        admin_token: TokenOut | None,
    ) -> None:
        super().__init__(name="rxledger-up-watcher", daemon=True)
        self.server, self.devnet, self.settings, self.console = server, devnet, settings, console
        self.admin_token = admin_token
        self.devnet_died = False

    def run(self) -> None:
        while not self.server.started and not self.server.should_exit:
            time.sleep(0.05)
        if self.server.started:
            self._seed()
            self._announce()
        while not self.server.should_exit:
            if not self.devnet.running:
                self.devnet_died = True
                self.console.print(f"[red]Anvil exited unexpectedly:[/red]\n{self.devnet.log_tail()}")
                self.server.should_exit = True
            time.sleep(0.5)

    def _seed(self) -> None:
        base = f"http://{_display_host(self.settings.api_host)}:{self.settings.api_port}"
        if self.admin_token is None or self.admin_token.token is None:
            self.console.print(
                "admin token: shown when this network was created "
                "(`rxledger users token admin` issues a new one)"
            )
            return
        self.console.print("seeding the demo consortium through the API...")
        try:
            seed_demo_via_api(base, self.admin_token.token, self.console)
        except Exception as exc:  # the network is still usable; say what went wrong
            self.console.print(f"[red]demo seeding failed: {exc}[/red]")
        self.console.print(f"consortium admin token (shown once): [bold]{self.admin_token.token}[/bold]")

    def _announce(self) -> None:
        s = self.settings
        base = f"http://{_display_host(s.api_host)}:{s.api_port}"
        health = collect_health(s)
        colour = "green" if health.status == "ok" else "red"
        self.console.print(
            "\n[bold]rxledger is up[/bold]\n"
            f"  web pages  {base}/ui/  (sign in with a demo user's token)\n"
            f"  API docs   {base}/docs\n"
            f"  health     {base}/health  ([{colour}]{health.status}[/{colour}])\n"
            f"  chain RPC  {s.rpc_url}  (chain {s.chain_id})\n"
            f"  manifest   {manifest_path(s.manifest_dir, s.chain_id)}\n"
            f"  chain data {s.devnet_state_file}\n"
            f"  anvil log  {self.devnet.log_path}\n"
            "Ctrl-C here, or `rxledger down` from another shell, stops everything."
        )
        for problem in health.problems:
            self.console.print(f"  [red]- {problem}[/red]")


def server_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """How `rxledger up` serves the API. Never with uvicorn's proxy headers: they would make any
    X-Forwarded-For from 127.0.0.1 the client's address; RXLEDGER_TRUSTED_PROXIES decides instead
    (api/edge/clientaddr.py)."""
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",
        lifespan="on",
        proxy_headers=False,
    )


def run_up(settings: Settings, console: Console) -> int:
    pidfile = pidfile_path(settings)
    existing = UpRecord.read(pidfile)
    if existing is not None and existing.running:
        raise UpError(
            f"already running (pid {existing.pid}, API {existing.api_url}); run `rxledger down` first"
        )
    devnet = Devnet.from_settings(settings, log_file=settings.devnet_state_file.parent / "anvil.log")
    with sigterm_as_interrupt():
        try:
            return _run(settings, devnet, pidfile, console)
        except KeyboardInterrupt:
            return 0
        finally:
            console.print("stopping...")
            devnet.stop()
            record = UpRecord.read(pidfile)
            if record is not None and record.pid == os.getpid():
                pidfile.unlink(missing_ok=True)
            console.print("stopped.")


def _run(settings: Settings, devnet: Devnet, pidfile: Path, console: Console) -> int:
    state = settings.devnet_state_file
    mode = "resuming the chain in" if state.exists() else "new chain, saved to"
    console.print(f"starting Anvil on port {settings.devnet_port} ({mode} {state})")
    devnet.start()
    pid = os.getpid()
    live = settings.model_copy(update={"rpc_url": devnet.rpc_url})
    UpRecord(
        pid=pid,
        start_time=process_start_time(pid),
        anvil_pid=devnet.pid,
        anvil_start_time=process_start_time(devnet.pid) if devnet.pid else None,
        rpc_url=devnet.rpc_url,
        api_url=f"http://{_display_host(settings.api_host)}:{settings.api_port}",
    ).write(pidfile)
    if settings.rpc_url.rstrip("/") != devnet.rpc_url:
        console.print(
            f"[yellow]note: RXLEDGER_RPC_URL is {settings.rpc_url}; this network serves {devnet.rpc_url}[/]"
        )

    live = devnet_settings(live, devnet.rpc_url)
    w3 = connect(live)
    try:
        manifest, deployed_now = ensure_deployed(w3, dev_accounts(1)[0], manifest_dir=settings.manifest_dir)
    except ManifestMismatch as exc:
        path = manifest_path(settings.manifest_dir, settings.chain_id)
        raise UpError(
            f"{exc}\nThe devnet does not hold the contracts recorded in {path}. If its state was reset, "
            "remove the manifest (`make clean` resets both) or redeploy with `rxledger deploy --force` "
            "against a running devnet."
        ) from exc
    verb = "deployed" if deployed_now else "verified"
    console.print(f"contracts {verb}:")
    for name, entry in manifest.contracts.items():
        console.print(f"  {name:<20} {entry.address}", highlight=False)
    engine = api_engine(settings.database_url)
    admin_token = ensure_admin(Runtime.create(live, engine), dev_accounts(1)[0])
    indexer = Indexer(engine, w3, manifest, confirmations=settings.confirmations)
    caught_up = indexer.sync()
    console.print(
        f"indexer: {caught_up.logs:,} events indexed up to block {caught_up.checkpoint or 'none new'}"
    )
    stop_indexer, mined = threading.Event(), threading.Event()
    indexer_thread = threading.Thread(
        target=indexer.run,
        args=(stop_indexer,),
        kwargs={"wake": mined},
        name="rxledger-indexer",
        daemon=True,
    )
    indexer_thread.start()

    server = uvicorn.Server(server_config(create_app(live, mined=mined), settings))
    watcher = _Watcher(server, devnet, live, console, admin_token)
    watcher.start()
    try:
        server.run()  # returns after Ctrl-C/SIGTERM (then re-raises the signal) or when the watcher stops it
    finally:
        stop_indexer.set()
        indexer_thread.join(timeout=10)
    return 1 if watcher.devnet_died or not server.started else 0


def run_down(settings: Settings, console: Console, *, grace: float = 30.0) -> int:
    pidfile = pidfile_path(settings)
    record = UpRecord.read(pidfile)
    if record is None:
        console.print("nothing to stop (no pidfile at " + str(pidfile) + ")")
        return 0
    ok = True
    if record.running:
        console.print(f"stopping rxledger up (pid {record.pid})...")
        ok = terminate(record.pid, record.start_time, grace=grace)
    # `up` stops Anvil itself, and Anvil dies with it anyway (PDEATHSIG): this only covers the odd case.
    if record.anvil_pid is not None and alive(record.anvil_pid, record.anvil_start_time):
        ok = terminate(record.anvil_pid, record.anvil_start_time, grace=10.0) and ok
    pidfile.unlink(missing_ok=True)
    console.print("stopped." if ok else "[red]could not stop every process[/red]")
    return 0 if ok else 1
