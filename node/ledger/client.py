"""A thin, typed way to act on the deployed contract suite as one key: send a transaction directly,
or sign it for a relayer (EIP-712) and have another key relay it.

Used by the demo seeding, the gas snapshot, the benchmarks and the tests; the API's submitter has
its own durable path and does not go through here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from node.chain import Sender, call
from node.ledger.relay import DOMAIN_NAMES, SignedAction, sign_action

SUITE_NAMES = ("ConsortiumRegistry", "BatchRegistry", "CustodyLedger")


class LedgerClient:
    """Acts on the suite as `account`."""

    def __init__(self, w3: Web3, contracts: Mapping[str, Contract], account: LocalAccount) -> None:
        self.w3 = w3
        self.contracts = contracts
        self.account = account
        self.sender = Sender(w3, account)
        self.chain_id = w3.eth.chain_id

    @property
    def address(self) -> str:
        return self.account.address

    def transact(self, contract: str, fn: str, *args: Any, gas: int | None = None) -> TxReceipt:
        """Send `contract.fn(*args)` as a transaction and wait for it; reverts raise ContractRevert."""
        bound = self.contracts[contract].functions[fn](*args)
        return self.sender.transact(bound, gas=gas)

    def view(self, contract: str, fn: str, *args: Any) -> Any:
        """Call a view function (as this account)."""
        return call(self.contracts[contract].functions[fn](*args), sender=self.address)

    def sign(
        self, contract: str, fn: str, *args: Any, deadline: int | None = None, nonce: int | None = None
    ) -> SignedAction:
        """Sign `contract.fn(*args)` for relaying; the nonce defaults to the signer's next one."""
        c = self.contracts[contract]
        if nonce is None:
            nonce = int(c.functions.nonces(self.address).call())
        if deadline is None:
            deadline = int(time.time()) + 3600
        return sign_action(
            c, DOMAIN_NAMES[contract], self.chain_id, self.account, fn, args, nonce=nonce, deadline=deadline
        )

    def relay(self, contract: str, signed: SignedAction, gas: int | None = None) -> TxReceipt:
        """Relay an action that another key signed, paying for it with this account."""
        return self.transact(
            contract, "relay", signed.action, signed.signer, signed.deadline, signed.signature, gas=gas
        )
