"""The production network as generated here (Docker has no engine on this machine, so these tests
read what the generator and the compose file say, and run what can run without Besu: the deployer
against Anvil, to show the permissioning address in every node's config is where the registry lands).

Vectors from Besu's documentation: the dev account key `8f2a...be63` and its address; the QBFT
extraData `besu rlp encode --type=QBFT_EXTRA_DATA` prints for four documented validators."""

from __future__ import annotations

import json
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from eth_account import Account
from typer.testing import CliRunner

from api.cli import app
from node.besu import compose as compose_module
from node.besu.network import (
    BESU_IMAGE,
    P2P_PORT,
    NetworkSpec,
    create_address,
    extra_data,
    node_identity,
    validators_of,
)
from node.chain import make_web3
from node.devnet import DEFAULT_GAS_LIMIT, Devnet
from node.paths import REPO_ROOT
from node.settings import Settings, get_settings

DOC_VALIDATORS = [  # besu-docs, QBFT: the input of `besu rlp encode`, in its order
    "0x4592c8e45706cc08b8f44b11e43cba0cfc5892cb",
    "0x06e23768a0f59cf365e18c2e0c89e151bcdedc70",
    "0xc5327f96ee02d7bcbc1bf1236b8c15148971e1de",
    "0xab5e7f4061c605820d3744227eed91ff8e2c8908",
]
DOC_EXTRA_DATA = (  # ... and its output (the CLI keeps the input order)
    "0xf87aa00000000000000000000000000000000000000000000000000000000000000000f854944592c8e45706cc08b8f44b11e4"
    "3cba0cfc5892cb9406e23768a0f59cf365e18c2e0c89e151bcdedc7094c5327f96ee02d7bcbc1bf1236b8c15148971e1de94ab"
    "5e7f4061c605820d3744227eed91ff8e2c8908c080c0"
)
COMPOSE_PATH = REPO_ROOT / "docker-compose.yml"


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def network_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("network") / "network"
    result = _cli("network", "init", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def _secrets(out: Path) -> dict[str, str]:
    lines = (out / "secrets.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def test_node_identity_is_besus() -> None:
    address, public = node_identity(
        bytes.fromhex("8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63")
    )
    assert address.lower() == "0xfe3b557e8fb62b89f4916b721be55ceb828dbd73"
    assert public.startswith("09b02f8a5fddd222ade4ea4528faefc399623af3f736be3c44f03e2df22fb792")
    assert len(public) == 128


def test_qbft_extra_data_is_besus_encoding() -> None:
    assert [v.lower() for v in validators_of(DOC_EXTRA_DATA)] == DOC_VALIDATORS
    # ours lists the validators in ascending order, which Besu's header validation requires:
    # list(122 bytes) [32-byte vanity, list(84 bytes) [4 x 20-byte address], no vote, round 0, no seals]
    ascending = sorted(DOC_VALIDATORS)
    expected = "0xf87aa0" + "00" * 32 + "f854" + "".join("94" + a[2:] for a in ascending) + "c080c0"
    assert extra_data(DOC_VALIDATORS) == expected
    assert extra_data(list(reversed(DOC_VALIDATORS))) == expected
    assert [v.lower() for v in validators_of(expected)] == ascending
    with pytest.raises(ValueError):
        validators_of(expected[:-6] + "c001c0")  # a round other than 0 is no genesis


def test_the_generated_genesis_names_exactly_the_generated_validators(network_dir: Path) -> None:
    summary = json.loads((network_dir / "network.json").read_text())
    genesis = json.loads((network_dir / "genesis.json").read_text())
    validators = summary["validators"]
    assert len(validators) == 4
    # each node key file gives the address the summary names; the genesis names exactly those
    for v in validators:
        key = (network_dir / v["name"] / "key").read_text().strip()
        address, public = node_identity(bytes.fromhex(key.removeprefix("0x")))
        assert address == v["address"]
        assert v["enode"] == f"enode://{public}@{v['ip']}:{P2P_PORT}"
    assert validators_of(genesis["extraData"]) == sorted((v["address"] for v in validators), key=str.lower)
    assert json.loads((network_dir / "static-nodes.json").read_text()) == [v["enode"] for v in validators]

    config = genesis["config"]
    assert config["chainId"] == summary["chain_id"] == NetworkSpec.chain_id
    assert config["qbft"] == {"blockperiodseconds": 2, "epochlength": 30000, "requesttimeoutseconds": 4}
    assert config["zeroBaseFee"] is True and config["cancunTime"] == 0  # the contracts target Cancun
    assert int(genesis["gasLimit"], 16) == DEFAULT_GAS_LIMIT  # as large as the devnet's
    assert genesis["difficulty"] == "0x1"
    assert genesis["mixHash"] == "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
    assert list(genesis["alloc"]) == [summary["deployer"][2:].lower()]


def test_every_node_config_enforces_the_registry_as_account_permissioning(network_dir: Path) -> None:
    summary = json.loads((network_dir / "network.json").read_text())
    deployer = Account.from_key(_secrets(network_dir)["RXLEDGER_DEPLOYER_KEY"]).address
    assert deployer == summary["deployer"]
    # the registry is the deployer's first contract creation (nonce 0)
    assert summary["permissioning_contract"] == create_address(deployer, 0)
    for v in summary["validators"]:
        config = tomllib.loads((network_dir / v["name"] / "config.toml").read_text())
        assert config["permissions-accounts-contract-enabled"] is True
        assert config["permissions-accounts-contract-address"] == summary["permissioning_contract"]
        assert (config["min-gas-price"], config["p2p-host"], config["discovery-enabled"]) == (
            0,
            v["ip"],
            False,
        )
        assert v["name"] in config["host-allowlist"]  # the other containers call it by service name
        assert {"ETH", "NET", "WEB3"} <= set(config["rpc-http-api"])
        assert config["metrics-enabled"] is True
        # the paths it names are the ones docker-compose.yml mounts
        mounts = {m.split(":")[1] for m in _compose()["services"][v["name"]]["volumes"]}
        assert {"/config/genesis.json", "/config/static-nodes.json", "/config/node"} <= mounts
        assert Path(config["node-private-key-file"]).parent.as_posix() == "/config/node"
        assert config["data-path"] in mounts


def test_secrets_are_for_their_owner_only(network_dir: Path) -> None:
    secret_files = [network_dir / "secrets.env", *network_dir.glob("besu-*/key")]
    assert len(secret_files) == 5
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    values = _secrets(network_dir)
    assert set(values) == {
        "RXLEDGER_DEPLOYER_KEY",
        "RXLEDGER_KEYSTORE_PASSWORD",
        "POSTGRES_PASSWORD",
        "PGPASSWORD",
    }
    assert values["PGPASSWORD"] == values["POSTGRES_PASSWORD"] and len(values["POSTGRES_PASSWORD"]) >= 24
    # a second init refuses to replace the keys
    assert _cli("network", "init", "--out", str(network_dir)).exit_code == 1


@pytest.mark.chain
def test_the_deployer_service_puts_the_registry_at_the_configured_address(network_dir: Path) -> None:
    """What the compose file's deployer runs (`rxledger deploy --if-absent && rxledger admin
    bootstrap`, with the generated secrets), on Anvil: the registry lands where every node's
    permissioning points, answers Besu's start-up probe, and a second run changes nothing."""
    summary = json.loads((network_dir / "network.json").read_text())
    secrets = _secrets(network_dir)
    deployer = Account.from_key(secrets["RXLEDGER_DEPLOYER_KEY"])
    with Devnet(port=0) as devnet:
        w3 = make_web3(devnet.rpc_url)
        w3.provider.make_request("anvil_setBalance", [deployer.address, hex(10**21)])  # type: ignore[arg-type]
        env = {
            "RXLEDGER_RPC_URL": devnet.rpc_url,
            "RXLEDGER_CHAIN_ID": "31337",
            "RXLEDGER_MANIFEST_DIR": str(network_dir / "deployments"),
            "RXLEDGER_DATABASE_URL": f"sqlite:///{network_dir / 'api.db'}",
            "RXLEDGER_KEYSTORE_DIR": str(network_dir / "keystore"),
            "RXLEDGER_KEYSTORE_SCRYPT_N": str(2**10),
            "RXLEDGER_DEPLOYER_KEY": secrets["RXLEDGER_DEPLOYER_KEY"],
            "RXLEDGER_KEYSTORE_PASSWORD": secrets["RXLEDGER_KEYSTORE_PASSWORD"],
        }
        deployed = _cli_env(env, "deploy", "--if-absent")
        assert deployed.exit_code == 0, deployed.output
        manifest = json.loads((network_dir / "deployments" / "31337.json").read_text())
        registry_address = manifest["contracts"]["ConsortiumRegistry"]["address"]
        assert registry_address == summary["permissioning_contract"]
        nonce = w3.eth.get_transaction_count(deployer.address)
        again = _cli_env(env, "deploy", "--if-absent")
        assert again.exit_code == 0 and "already deployed" in again.output
        assert w3.eth.get_transaction_count(deployer.address) == nonce  # nothing sent

        first = _cli_env(env, "admin", "bootstrap")
        assert first.exit_code == 0 and "consortium admin token (shown once): rxl_" in first.output
        second = _cli_env(env, "admin", "bootstrap")
        assert second.exit_code == 0 and "already exists" in second.output
        assert secrets["RXLEDGER_DEPLOYER_KEY"][2:] not in first.output + deployed.output

        registry = w3.eth.contract(address=registry_address, abi=_abi("ConsortiumRegistry"))
        allowed = registry.functions.transactionAllowed
        zero = "0x" + "00" * 20
        # Besu's start-up probe: a zero sender, nothing else; it must answer, not revert
        assert allowed(zero, zero, 0, 0, 0, b"").call() is False
        assert allowed(deployer.address, zero, 0, 0, 0, b"").call() is True  # the admin
        assert allowed(Account.create().address, registry_address, 0, 0, 21000, b"\x01").call() is False


def test_deploying_elsewhere_than_the_devnet_needs_the_deployer_key(tmp_path: Path) -> None:
    result = _cli_env({"RXLEDGER_CHAIN_ID": "7331", "RXLEDGER_MANIFEST_DIR": str(tmp_path)}, "deploy")
    assert result.exit_code == 1 and "RXLEDGER_DEPLOYER_KEY" in result.output


def _cli_env(env: dict[str, str], *args: str) -> Any:
    get_settings.cache_clear()  # the command reads RXLEDGER_* from `env`
    try:
        return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def _abi(name: str) -> Any:
    from node.artifacts import load_artifact

    return load_artifact(name).abi


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_PATH.read_text())
    return loaded


def test_the_committed_compose_file_is_the_generators() -> None:
    assert COMPOSE_PATH.read_text() == compose_module.render()
    result = _cli("network", "compose", "--check", "--path", str(COMPOSE_PATH))
    assert result.exit_code == 0, result.output


def test_every_image_is_pinned() -> None:
    services = _compose()["services"]
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.fullmatch(r"\d+(\.\d+)+(-[a-z0-9]+)?", tag), f"{name}: {image} is not pinned"
        if repository == "rxledger":  # ours: built from this checkout, tagged with its version
            assert tag == version and service["build"] == {"context": "."}
    assert {s["image"] for s in services.values() if s["image"].startswith("hyperledger/")} == {BESU_IMAGE}
    base = re.search(r"^FROM (\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm", base.group(1))


def test_start_order_healthchecks_ports_and_volumes_are_consistent() -> None:
    spec = _compose()
    services = spec["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dependency]["restart"] == "no", f"{dependency} is not a one-shot"
            else:
                assert condition == "service_started"
            # a partner's stack may lean on the shared network, not the other way round
            if "profiles" not in service:
                assert "profiles" not in services[dependency]
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name}: long-running services have a healthcheck"
    host_ports = [p.rsplit(":", 1)[0] for s in services.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports
    assert all(p.startswith("127.0.0.1:") for p in host_ports)  # nothing listens beyond the host
    named = {
        m.split(":")[0] for s in services.values() for m in s.get("volumes", []) if not m.startswith("./")
    }
    assert named == set(spec["volumes"])
    bind = {m.split(":")[0] for s in services.values() for m in s.get("volumes", []) if m.startswith("./")}
    assert all(b.startswith("./var/network/") for b in bind)  # generated, and var/ is not committed
    assert "var/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
    # each validator at the address its enode URL uses, inside the network's subnet
    ips = [services[f"besu-{i}"]["networks"]["rxledger"]["ipv4_address"] for i in range(1, 5)]
    assert ips == [NetworkSpec().ip(i) for i in range(1, 5)]
    assert spec["networks"]["rxledger"]["ipam"]["config"] == [{"subnet": NetworkSpec().subnet}]


def test_environment_names_are_settings_and_secrets_stay_in_the_env_file() -> None:
    fields = set(Settings.model_fields)
    for name, service in _compose()["services"].items():
        environment = service.get("environment", {})
        for variable in environment:
            if variable.startswith("RXLEDGER_"):
                assert variable.removeprefix("RXLEDGER_").lower() in fields, f"{name}: {variable}"
            assert not re.search(r"PASSWORD|_KEY$|SECRET|TOKEN", variable), f"{name}: {variable} is inline"
        for path in service.get("env_file", []):
            assert path == "./var/network/secrets.env"
        url = environment.get("RXLEDGER_DATABASE_URL")
        if url:  # no password in the URL: libpq reads PGPASSWORD from the env file
            assert ":" not in url.split("//", 1)[1].split("@")[0], f"{name}: {url}"


def test_the_generated_secrets_are_what_the_services_read(network_dir: Path) -> None:
    for variable in _secrets(network_dir):
        if variable.startswith("RXLEDGER_"):
            assert variable.removeprefix("RXLEDGER_").lower() in Settings.model_fields
        else:
            assert variable in ("POSTGRES_PASSWORD", "PGPASSWORD")  # the postgres image's; libpq's


def test_partners_run_their_own_api_indexer_and_database_on_their_own_node() -> None:
    services = _compose()["services"]
    partners = {n: s for n, s in services.items() if "partners" in s.get("profiles", [])}
    assert set(partners) == {f"partner-{x}-{part}" for x in "ab" for part in ("postgres", "indexer", "api")}
    seen_nodes, seen_databases = set(), set()
    for letter in "ab":
        api = services[f"partner-{letter}-api"]
        indexer = services[f"partner-{letter}-indexer"]
        for app_service in (api, indexer):
            assert app_service["environment"]["RXLEDGER_DATABASE_URL"].endswith(
                f"@partner-{letter}-postgres:5432/rxledger"
            )
        assert api["environment"]["RXLEDGER_RPC_URL"] == indexer["environment"]["RXLEDGER_RPC_URL"]
        seen_nodes.add(api["environment"]["RXLEDGER_RPC_URL"])
        seen_databases.add(f"partner-{letter}-postgres")
        # they read the consortium's deployment manifest, never write it
        assert "manifests:/srv/rxledger/deployments:ro" in api["volumes"]
    operator = services["api"]["environment"]["RXLEDGER_RPC_URL"]
    assert len(seen_nodes) == 2 and operator not in seen_nodes
