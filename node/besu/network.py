"""A Hyperledger Besu QBFT consortium network, generated: validator node keys, the genesis (QBFT
extraData naming the validators), each node's config.toml and the static-nodes list, and a public
summary (`network.json`). Secrets (node keys, the deployer key, passwords) are written with mode 0600
into the output directory, never into the repository.

Facts this module relies on (Besu's QbftExtraDataCodec and docs):
- extraData = RLP([32 zero bytes, [validator addresses ascending], vote, round, seals]); at genesis
  the vote is absent (an empty list), the round is 0 (the empty string), the seals an empty list.
- A node's address is the last 20 bytes of keccak256 of its 64-byte public key; its enode id is that
  public key in hex. Enode URLs need IP addresses, so every node gets a fixed one.
- On-chain account permissioning (Besu <= 25.5.0) calls `transactionAllowed(address,address,uint256,
  uint256,uint256,bytes)` on the configured contract; while no code is at that address every
  transaction is allowed. The address configured here is where the deployer's first contract creation
  (nonce 0, the ConsortiumRegistry) lands, so the registry gates the chain from its deployment on.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import rlp
from coincurve import PrivateKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from node.devnet import DEFAULT_GAS_LIMIT

BESU_IMAGE = "hyperledger/besu:25.5.0"  # the last release with on-chain account permissioning
QBFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
VANITY = b"\0" * 32
RPC_PORT, WS_PORT, P2P_PORT, METRICS_PORT = 8545, 8546, 30303, 9545
DEPLOYER_BALANCE_WEI = 10**27  # gas is nominal on this chain; the admin funds the keys it creates


@dataclass(frozen=True)
class NetworkSpec:
    """What an operator chooses; everything else follows."""

    chain_id: int = 7331
    validators: int = 4
    block_period_seconds: int = 2
    request_timeout_seconds: int = 4  # Besu's guidance: about twice the block period
    epoch_length: int = 30_000
    gas_limit: int = DEFAULT_GAS_LIMIT  # a 500-item custody batch fits many times over
    subnet: str = "172.16.240.0/24"

    def ip(self, index: int) -> str:
        """Validator `index` (1-based) at .11, .12, ... of the subnet."""
        base = self.subnet.split("/")[0].rsplit(".", 1)[0]
        return f"{base}.{10 + index}"


@dataclass(frozen=True)
class Validator:
    index: int
    address: str  # checksummed
    public_key: str  # 128 hex digits, no 0x: the enode id
    ip: str

    @property
    def name(self) -> str:
        return f"besu-{self.index}"

    @property
    def enode(self) -> str:
        return f"enode://{self.public_key}@{self.ip}:{P2P_PORT}"


@dataclass
class Network:
    """The public description of a generated network (`network.json`)."""

    spec: NetworkSpec
    validators: list[Validator]
    deployer: str  # checksummed address of the key that deploys the contracts (and is their admin)
    permissioning_contract: str
    besu_image: str = BESU_IMAGE
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.spec.chain_id,
            "spec": asdict(self.spec),
            "besu_image": self.besu_image,
            "deployer": self.deployer,
            "permissioning_contract": self.permissioning_contract,
            "validators": [
                {"name": v.name, "address": v.address, "enode": v.enode, "ip": v.ip} for v in self.validators
            ],
        }


def node_identity(private_key: bytes) -> tuple[str, str]:
    """(checksummed address, enode public key hex) of a secp256k1 node key."""
    public = PrivateKey(private_key).public_key.format(compressed=False)[1:]
    return to_checksum_address(keccak(public)[-20:]), public.hex()


def create_address(sender: str, nonce: int) -> str:
    """Where a contract created by `sender` at `nonce` lands (CREATE: keccak(rlp([sender, nonce])))."""
    address: str = to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[-20:])
    return address


def extra_data(addresses: list[str]) -> str:
    """QBFT genesis extraData naming `addresses` as validators (sorted ascending, as Besu requires)."""
    ordered = sorted(bytes.fromhex(a.removeprefix("0x").lower()) for a in addresses)
    encoded: bytes = rlp.encode([VANITY, ordered, [], b"", []])
    return "0x" + encoded.hex()


def validators_of(extra: str) -> list[str]:
    """The validator addresses a QBFT extraData names (the inverse of `extra_data`); strict."""
    decoded = rlp.decode(bytes.fromhex(extra.removeprefix("0x")))
    if not isinstance(decoded, list) or len(decoded) != 5:
        raise ValueError("QBFT extraData is a list of 5 items")
    vanity, validators, vote, round_, seals = decoded
    if len(vanity) != 32 or vote != [] or round_ != b"" or seals != []:
        raise ValueError("genesis extraData: 32-byte vanity, no vote, round 0, no seals")
    if any(len(v) != 20 for v in validators):
        raise ValueError("validators are 20-byte addresses")
    return [str(to_checksum_address(v)) for v in validators]


def genesis(spec: NetworkSpec, validators: list[Validator], deployer: str) -> dict[str, Any]:
    return {
        "config": {
            "chainId": spec.chain_id,
            "berlinBlock": 0,
            "londonBlock": 0,
            "shanghaiTime": 0,
            "cancunTime": 0,  # the contracts are compiled for Cancun (scripts/compile-contracts.mjs)
            "zeroBaseFee": True,
            "contractSizeLimit": 2147483647,
            "qbft": {
                "blockperiodseconds": spec.block_period_seconds,
                "epochlength": spec.epoch_length,
                "requesttimeoutseconds": spec.request_timeout_seconds,
            },
        },
        "nonce": "0x0",
        "timestamp": "0x0",
        "gasLimit": hex(spec.gas_limit),
        "difficulty": "0x1",
        "mixHash": QBFT_MIX_HASH,
        "coinbase": "0x" + "00" * 20,
        "extraData": extra_data([v.address for v in validators]),
        "alloc": {deployer.removeprefix("0x").lower(): {"balance": hex(DEPLOYER_BALANCE_WEI)}},
    }


def node_config(validator: Validator, permissioning_contract: str) -> str:
    """config.toml of one validator (paths inside its container)."""
    lines = [
        f"# {validator.name}: QBFT validator {validator.address}",
        'data-path="/var/lib/besu"',
        'genesis-file="/config/genesis.json"',
        'node-private-key-file="/config/node/key"',
        'static-nodes-file="/config/static-nodes.json"',
        "discovery-enabled=false",
        f"p2p-host={json.dumps(validator.ip)}",
        f"p2p-port={P2P_PORT}",
        "rpc-http-enabled=true",
        'rpc-http-host="0.0.0.0"',
        f"rpc-http-port={RPC_PORT}",
        'rpc-http-api=["ETH","NET","WEB3","QBFT","TXPOOL"]',
        'rpc-http-cors-origins=["*"]',
        # the containers of the compose network reach the node by its service name
        f'host-allowlist=["localhost","127.0.0.1","{validator.name}"]',
        "rpc-ws-enabled=true",
        'rpc-ws-host="0.0.0.0"',
        f"rpc-ws-port={WS_PORT}",
        'rpc-ws-api=["ETH","NET","WEB3"]',
        "metrics-enabled=true",
        'metrics-host="0.0.0.0"',
        f"metrics-port={METRICS_PORT}",
        "min-gas-price=0",
        'sync-mode="FULL"',
        "revert-reason-enabled=true",
        'tx-pool="SEQUENCED"',
        "tx-pool-limit-by-account-percentage=1",
        "tx-pool-max-size=10000",
        "permissions-accounts-contract-enabled=true",
        f'permissions-accounts-contract-address="{permissioning_contract}"',
    ]
    return "\n".join(lines) + "\n"


def generate(spec: NetworkSpec, *, deployer_key: bytes | None = None) -> tuple[Network, dict[str, bytes]]:
    """A new network: its public description and its secrets (file name -> content)."""
    secret_files: dict[str, bytes] = {}
    validators = []
    for index in range(1, spec.validators + 1):
        key = secrets.token_bytes(32)
        address, public = node_identity(key)
        validators.append(Validator(index, address, public, spec.ip(index)))
        secret_files[f"besu-{index}/key"] = ("0x" + key.hex()).encode()
    deployer_key = deployer_key or secrets.token_bytes(32)
    deployer, _ = node_identity(deployer_key)
    database_password = secrets.token_urlsafe(24)
    env = {
        "RXLEDGER_DEPLOYER_KEY": "0x" + deployer_key.hex(),
        "RXLEDGER_KEYSTORE_PASSWORD": secrets.token_urlsafe(24),
        "POSTGRES_PASSWORD": database_password,  # the postgres image's superuser password
        "PGPASSWORD": database_password,  # what libpq (psycopg) in the API and indexer sends
    }
    secret_files["secrets.env"] = "".join(f"{k}={v}\n" for k, v in env.items()).encode()
    network = Network(spec, validators, deployer, create_address(deployer, 0))
    return network, secret_files


def write(network: Network, secret_files: dict[str, bytes], out: Path) -> list[Path]:
    """Write the network into `out`; secrets readable by their owner only. Returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, content: bytes, *, secret: bool = False) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if secret:
            os.chmod(path, 0o600)
        written.append(path)

    spec = network.spec
    put("genesis.json", _json(genesis(spec, network.validators, network.deployer)))
    put("static-nodes.json", _json([v.enode for v in network.validators]))
    put("network.json", _json(network.to_json()))
    for v in network.validators:
        put(f"{v.name}/config.toml", node_config(v, network.permissioning_contract).encode())
    for name, content in secret_files.items():
        put(name, content, secret=True)
    return written


def load(out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / "network.json").read_text())
    return loaded


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()
