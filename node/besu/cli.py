"""`rxledger network ...`: generate a Besu QBFT network and the docker-compose file that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from node.besu import compose as compose_file
from node.besu.network import NetworkSpec, generate, write

network_app = typer.Typer(no_args_is_help=True, help="The production network (Besu QBFT, docker-compose).")
console = Console()
COMPOSE_FILE = Path("docker-compose.yml")


@network_app.command("init")
def init(
    out: Annotated[Path, typer.Option(help="Where the network's files go (keys included)")] = Path(
        "var/network"
    ),
    validators: Annotated[int, typer.Option(min=1, max=32, help="QBFT validators (4 tolerate 1 fault)")] = 4,
    chain_id: Annotated[int, typer.Option(min=1, help="The consortium chain's id")] = NetworkSpec.chain_id,
    block_period: Annotated[int, typer.Option(min=1, help="Seconds per block")] = 2,
    force: Annotated[bool, typer.Option(help="Overwrite an existing network (new keys, new chain)")] = False,
) -> None:
    """Create validator keys, the QBFT genesis, node configs, static nodes and secrets.env."""
    if (out / "genesis.json").exists() and not force:
        console.print(f"[red]{out} already holds a network; --force replaces it (and its keys)[/red]")
        raise typer.Exit(1)
    spec = NetworkSpec(
        chain_id=chain_id,
        validators=validators,
        block_period_seconds=block_period,
        request_timeout_seconds=2 * block_period,
    )
    network, secrets = generate(spec)
    write(network, secrets, out)
    console.print(f"network for chain {spec.chain_id} in {out}:")
    for v in network.validators:
        console.print(f"  {v.name}  {v.address}  {v.ip}", highlight=False)
    console.print(f"  deployer (contracts' admin)  {network.deployer}", highlight=False)
    console.print(f"  account permissioning        {network.permissioning_contract}", highlight=False)
    console.print(f"secrets (mode 0600, never commit): {out}/secrets.env and {out}/besu-*/key")
    if (validators, chain_id) != (4, NetworkSpec.chain_id):
        console.print("docker-compose.yml was made for 4 validators on the default chain id: run")
        console.print(f"`rxledger network compose --validators {validators} --chain-id {chain_id}`")


@network_app.command("compose")
def compose(
    validators: Annotated[int, typer.Option(min=1, max=32)] = 4,
    chain_id: Annotated[int, typer.Option(min=1)] = NetworkSpec.chain_id,
    check: Annotated[
        bool, typer.Option(help="Exit 1 if docker-compose.yml differs instead of writing")
    ] = False,
    path: Annotated[Path, typer.Option(help="The compose file")] = COMPOSE_FILE,
) -> None:
    """Write docker-compose.yml for the network (or check the committed one)."""
    text = compose_file.render(NetworkSpec(chain_id=chain_id, validators=validators))
    if check:
        if not path.exists() or path.read_text() != text:
            console.print(f"[red]{path} is not what `rxledger network compose` makes[/red]")
            raise typer.Exit(1)
        console.print(f"{path} is up to date")
        return
    path.write_text(text)
    console.print(f"wrote {path}")
