"""What every request and the submitter share: settings, the database, the chain connection
(opened lazily and re-opened after the node comes back), the keystore, the wake-up signal."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine
from web3 import Web3
from web3.contract import Contract

from api.write.keystore import Keystore
from node.chain import ChainError, connect
from node.deploy import Manifest, load_contracts, load_manifest, manifest_path
from node.errors import ErrorRegistry, default_registry
from node.settings import Settings


class ChainUnavailable(RuntimeError):
    """The node cannot be reached or holds no deployment: writes are refused with 503."""


@dataclass
class Chain:
    w3: Web3
    manifest: Manifest
    contracts: Mapping[str, Contract]
    chain_id: int


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    keystore: Keystore
    registry: ErrorRegistry = field(default_factory=default_registry)
    wake: threading.Event = field(default_factory=threading.Event)  # new work for the submitter
    # set by the submitter when a transaction is mined: an indexer in this process looks at once
    mined: threading.Event = field(default_factory=threading.Event)
    _chain: Chain | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: Settings, engine: Engine) -> Runtime:
        password = settings.keystore_password.get_secret_value() if settings.keystore_password else None
        keystore = Keystore(settings.keystore_dir, password, scrypt_n=settings.keystore_scrypt_n)
        return cls(settings=settings, engine=engine, keystore=keystore)

    def chain(self) -> Chain:
        """The chain connection; raises ChainUnavailable when the node is down or not deployed."""
        with self._lock:
            if self._chain is not None:
                return self._chain
            try:
                w3 = connect(self.settings, timeout=5.0)
            except ChainError as exc:
                raise ChainUnavailable(str(exc)) from exc
            manifest = load_manifest(self.settings.manifest_dir, self.settings.chain_id)
            if manifest is None:
                path = manifest_path(self.settings.manifest_dir, self.settings.chain_id)
                raise ChainUnavailable(f"no deployment manifest at {path}")
            self._chain = Chain(w3, manifest, load_contracts(w3, manifest), self.settings.chain_id)
            return self._chain

    def reset_chain(self) -> None:
        """Forget the connection (after a node error), so the next use reconnects and re-checks."""
        with self._lock:
            self._chain = None

    def chain_reachable(self) -> bool:
        try:
            self.chain().w3.eth.block_number  # noqa: B018  (one cheap round trip)
        except ChainUnavailable:
            return False
        except Exception:  # connection refused, timeout: the node is down right now
            return False
        return True
