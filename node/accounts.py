"""The devnet's deterministic accounts, derived from the well-known Anvil/Hardhat test mnemonic."""

from __future__ import annotations

from functools import lru_cache

from eth_account import Account
from eth_account.signers.local import LocalAccount

# Public test mnemonic: these keys are for a local devnet only and hold nothing of value.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNT_COUNT = 20
DEVNET_CHAIN_ID = 31337


@lru_cache(maxsize=4)
def _derive(mnemonic: str, count: int) -> tuple[LocalAccount, ...]:
    Account.enable_unaudited_hdwallet_features()
    return tuple(Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count))


def dev_accounts(count: int = DEV_ACCOUNT_COUNT, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    """The first `count` accounts Anvil funds when started with `mnemonic` (derivation m/44'/60'/0'/0/i)."""
    return list(_derive(mnemonic, count))
