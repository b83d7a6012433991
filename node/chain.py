"""Connect to the chain and send transactions from local accounts quickly, with decoded reverts.

Fast path (TOOLCHAIN-NOTES, web3 8): we fill nonce, gas, fees and chainId ourselves instead of
`build_transaction` (~6 RPC calls), sign locally, and poll for the receipt every 10 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import requests
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxParams, TxReceipt

from node.errors import ContractRevert, ErrorRegistry, translate_reverts
from node.settings import Settings, get_settings

GWEI = 10**9
DEFAULT_PRIORITY_FEE = 1 * GWEI
# Floor for maxFeePerGas: Anvil starts at a 1 gwei base fee that only falls on a quiet devnet, so a
# sender priced at the floor stays valid even after evm_revert to an early block.
MIN_MAX_FEE = 3 * GWEI


class ChainError(RuntimeError):
    pass


class ChainUnreachable(ChainError):
    pass


class ChainIdMismatch(ChainError):
    def __init__(self, rpc_url: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{rpc_url} is chain {actual}, but settings expect chain {expected} "
            "(check RXLEDGER_RPC_URL and RXLEDGER_CHAIN_ID)"
        )
        self.expected = expected
        self.actual = actual


def make_web3(rpc_url: str, *, timeout: float = 10.0) -> Web3:
    # No retry-with-backoff: against a local node a refused connection means "down", and the
    # default retries would make a health check take seconds to say so.
    provider = Web3.HTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
    )
    return Web3(provider)


def connect(
    settings: Settings | None = None,
    *,
    rpc_url: str | None = None,
    timeout: float = 10.0,
) -> Web3:
    """A Web3 on settings.rpc_url (or `rpc_url`), after checking the node serves settings.chain_id."""
    settings = settings or get_settings()
    url = rpc_url or settings.rpc_url
    w3 = make_web3(url, timeout=timeout)
    try:
        chain_id = w3.eth.chain_id
    except (requests.exceptions.RequestException, OSError) as exc:
        raise ChainUnreachable(f"cannot reach the chain at {url}: {exc.__class__.__name__}") from exc
    if chain_id != settings.chain_id:
        raise ChainIdMismatch(url, settings.chain_id, chain_id)
    return w3


def revert_data_of_failed_tx(w3: Web3, tx_hash: HexBytes) -> tuple[bytes, str | None]:
    """(revert data, node's error text) of a mined transaction with status 0.

    A receipt carries no revert data. Replaying with eth_call at the parent block needs historical
    state, which `--prune-history` drops, so ask the node's tracer instead (Anvil and Besu keep it)."""
    tx = tx_hash.to_0x_hex()
    response = w3.provider.make_request(cast(Any, "trace_transaction"), [tx])
    traces = response.get("result") or []
    if traces:
        top = traces[0]
        output = (top.get("result") or {}).get("output") or "0x"
        return bytes.fromhex(output[2:]), top.get("error")
    response = w3.provider.make_request(cast(Any, "debug_traceTransaction"), [tx, {"disableStack": True}])
    result = response.get("result") or {}
    value = result.get("returnValue") or ""
    return bytes.fromhex(value.removeprefix("0x")), None


def call(fn: ContractFunction, *, sender: str | None = None, registry: ErrorRegistry | None = None) -> Any:
    """`fn.call()` with reverts raised as ContractRevert."""
    with translate_reverts(registry):
        return fn.call({"from": cast(ChecksumAddress, sender)} if sender else None)


class Sender:
    """Signs and sends transactions for one local account.

    The nonce is read from the node ("pending") for every transaction: one cheap local RPC, and it
    stays right after evm_revert or when several Sender objects share an account. Fees are fixed per
    sender (Anvil silently drops a queued tx priced far above the same sender's earlier ones)."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        priority_fee: int = DEFAULT_PRIORITY_FEE,
        gas_margin: float = 1.2,
        poll_latency: float = 0.01,
        receipt_timeout: float = 60.0,
        registry: ErrorRegistry | None = None,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.address: ChecksumAddress = account.address
        self.priority_fee = priority_fee
        self.gas_margin = gas_margin
        self.poll_latency = poll_latency
        self.receipt_timeout = receipt_timeout
        self.registry = registry
        self.chain_id = w3.eth.chain_id
        self.max_fee = 0
        self.block_gas_limit = 0
        self.refresh_fees()

    def refresh_fees(self) -> None:
        block = self.w3.eth.get_block("latest")
        base_fee = int(block.get("baseFeePerGas", 0))
        self.max_fee = max(2 * base_fee + self.priority_fee, MIN_MAX_FEE)
        self.block_gas_limit = int(block["gasLimit"])

    def nonce(self) -> int:
        return self.w3.eth.get_transaction_count(self.address, "pending")

    def estimate_gas(self, tx: Mapping[str, Any]) -> int:
        """eth_estimateGas plus a margin; a revert here surfaces as ContractRevert before sending."""
        with translate_reverts(self.registry):
            estimate = self.w3.eth.estimate_gas(cast(TxParams, {"from": self.address, **tx}))
        return min(int(estimate * self.gas_margin), self.block_gas_limit)

    def sign(self, tx: Mapping[str, Any], *, nonce: int, gas: int) -> SignedTransaction:
        full = {
            "chainId": self.chain_id,
            "nonce": nonce,
            "gas": gas,
            "maxFeePerGas": self.max_fee,
            "maxPriorityFeePerGas": self.priority_fee,
            "value": 0,
            **tx,
        }
        return self.account.sign_transaction(full)

    def submit(self, tx: Mapping[str, Any], *, gas: int | None = None) -> HexBytes:
        """Sign and send `tx` ({to, data, value}) without waiting; returns the tx hash."""
        gas = gas or self.estimate_gas(tx)
        try:
            return self._send_signed(tx, gas)
        except Web3RPCError as exc:
            if "base fee" not in str(exc).lower():
                raise
            self.refresh_fees()  # the base fee rose above our cap (e.g. after big blocks): once more
            return self._send_signed(tx, gas)

    def send(self, tx: Mapping[str, Any], *, gas: int | None = None) -> TxReceipt:
        """Send `tx` and wait for its receipt. Raises ContractRevert when it reverts, at gas
        estimation (when `gas` is not given) or once mined."""
        return self.wait(self.submit(tx, gas=gas))

    def _send_signed(self, tx: Mapping[str, Any], gas: int) -> HexBytes:
        signed = self.sign(tx, nonce=self.nonce(), gas=gas)
        return self.w3.eth.send_raw_transaction(signed.raw_transaction)

    def wait(self, tx_hash: HexBytes) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=self.receipt_timeout, poll_latency=self.poll_latency
        )
        if receipt["status"] != 1:
            data, reason = revert_data_of_failed_tx(self.w3, tx_hash)
            raise ContractRevert.from_data(
                data, self.registry, tx_hash=HexStr(tx_hash.to_0x_hex()), reason=reason
            )
        return receipt

    def transact(self, fn: ContractFunction, *, value: int = 0, gas: int | None = None) -> TxReceipt:
        """Call a bound contract function in a transaction: `sender.transact(c.functions.f(x))`."""
        tx = {"to": fn.address, "data": fn._encode_transaction_data(), "value": value}
        return self.send(tx, gas=gas)

    def deploy(
        self,
        abi: Sequence[Mapping[str, Any]],
        bytecode: bytes,
        args: Sequence[Any] = (),
        *,
        gas: int | None = None,
    ) -> TxReceipt:
        """Deploy a contract; the receipt's contractAddress is its address."""
        factory = self.w3.eth.contract(abi=cast(Any, abi), bytecode=HexStr("0x" + bytecode.hex()))
        data = factory.constructor(*args).data_in_transaction
        return self.send({"data": data}, gas=gas)


__all__ = [
    "ChainError",
    "ChainIdMismatch",
    "ChainUnreachable",
    "ContractLogicError",
    "ContractRevert",
    "Sender",
    "call",
    "connect",
    "make_web3",
    "revert_data_of_failed_tx",
]
