"""Custodial organisation keys in encrypted keystore files (the Web3 Secret Storage format that
geth, Besu's ethsigner and eth-account all read), one file per key, named by address.

The password (a key-encryption key) comes from settings, never from the database; decrypted keys
are held in memory only by the process that signs.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address


class KeystoreError(RuntimeError):
    pass


class Keystore:
    def __init__(self, directory: Path, password: str | None, *, scrypt_n: int = 2**18) -> None:
        self.directory = directory
        self._password = password
        self.scrypt_n = scrypt_n
        self._unlocked: dict[str, LocalAccount] = {}
        self._lock = threading.Lock()

    @property
    def usable(self) -> bool:
        return self._password is not None

    def path(self, address: str) -> Path:
        return self.directory / f"{to_checksum_address(address)}.json"

    def has(self, address: str) -> bool:
        return self.path(address).exists()

    def create(self) -> LocalAccount:
        """A new random key, written encrypted; returns the unlocked account."""
        account: LocalAccount = Account.create()
        self.store(account)
        return account

    def store(self, account: LocalAccount) -> str:
        """Encrypt and write `account`'s key (idempotent: an existing file is kept)."""
        password = self._require_password()
        path = self.path(account.address)
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            encrypted = Account.encrypt(account.key, password, kdf="scrypt", iterations=self.scrypt_n)
            tmp = path.with_suffix(".tmp")
            # 0600 from the start: the file never exists readable by others
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(encrypted, fh)
            tmp.replace(path)
        with self._lock:
            self._unlocked[account.address] = account
        return account.address

    def account(self, address: str) -> LocalAccount:
        """The unlocked key for `address` (decrypted once per process)."""
        checksum = to_checksum_address(address)
        with self._lock:
            cached = self._unlocked.get(checksum)
        if cached is not None:
            return cached
        path = self.path(checksum)
        if not path.exists():
            raise KeystoreError(f"no keystore file for {checksum} in {self.directory}")
        password = self._require_password()
        try:
            key = Account.decrypt(json.loads(path.read_text()), password)
        except ValueError as exc:
            raise KeystoreError(f"cannot decrypt the keystore of {checksum}: {exc}") from exc
        account: LocalAccount = Account.from_key(key)
        with self._lock:
            self._unlocked[checksum] = account
        return account

    def _require_password(self) -> str:
        if self._password is None:
            raise KeystoreError("custodial keys need RXLEDGER_KEYSTORE_PASSWORD")
        return self._password
