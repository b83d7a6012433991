"""`rxledger indexer ...` and `rxledger audit ...` commands (mounted by api/cli.py)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from node.chain import connect
from node.deploy import load_contracts, load_manifest
from node.indexer.audit import audit
from node.indexer.database import read_model_engine
from node.indexer.follower import Indexer
from node.indexer.follower import Progress as SyncProgress
from node.settings import get_settings

indexer_app = typer.Typer(help="Follow the chain into the read models.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the read models against the chain.", no_args_is_help=True)
console = Console()


def _indexer() -> Indexer:
    settings = get_settings()
    w3 = connect(settings)
    manifest = load_manifest(settings.manifest_dir, settings.chain_id)
    if manifest is None:
        raise typer.BadParameter(
            f"no deployment manifest for chain {settings.chain_id} in {settings.manifest_dir}"
        )
    return Indexer(
        read_model_engine(settings.database_url), w3, manifest, confirmations=settings.confirmations
    )


def _with_bar(work: str, indexer: Indexer) -> SyncProgress:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("block {task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(work, total=indexer.w3.eth.block_number)

        def update(p: SyncProgress) -> None:
            bar.update(task, completed=p.checkpoint, total=p.head)

        result = (
            indexer.rebuild(on_progress=update) if work == "rebuild" else indexer.sync(on_progress=update)
        )
    return result


def _report(p: SyncProgress) -> None:
    rate = p.items / p.seconds if p.seconds else 0.0
    console.print(
        f"{p.blocks:,} blocks, {p.logs:,} events, {p.items:,} item events in {p.seconds:.1f} s "
        f"({rate:,.0f} item events/s); checkpoint {p.checkpoint}; reorgs {p.reorgs}"
    )


@indexer_app.command("sync")
def sync() -> None:
    """Catch up to the chain head once and exit."""
    _report(_with_bar("sync", _indexer()))


@indexer_app.command("rebuild")
def rebuild() -> None:
    """Drop the read models and replay the whole chain."""
    _report(_with_bar("rebuild", _indexer()))


@indexer_app.command("run")
def run(poll: Annotated[float, typer.Option(help="seconds between polls of the head")] = 0.2) -> None:
    """Follow the head until interrupted (Ctrl-C or SIGTERM)."""
    logging.basicConfig(level=get_settings().log_level)
    indexer = _indexer()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"indexer following {indexer.rpc_url} into {get_settings().database_url}")
    indexer.run(stop, poll_interval=poll)


@audit_app.command("consistency")
def consistency(
    full: Annotated[bool, typer.Option("--full", help="check every row instead of a sample")] = False,
    sample: Annotated[int, typer.Option(help="rows per table to sample")] = 200,
) -> None:
    """Compare units, containers and batches with the contracts' views at the indexed block."""
    indexer = _indexer()
    contracts = load_contracts(indexer.w3, indexer.manifest)
    report = audit(indexer.engine, indexer.w3, contracts, sample=None if full else sample)
    checked = ", ".join(f"{n:,} {k}" for k, n in report.checked.items())
    for line in report.divergences:
        console.print(f"[red]DIVERGENCE[/red] {line}")
    if report.ok:
        console.print(f"consistent at block {report.block}: {checked}")
        return
    console.print(f"[red]{len(report.divergences)} divergences[/red] at block {report.block} ({checked})")
    raise typer.Exit(1)
