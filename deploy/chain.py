"""Connect to a chain: the embedded eth-tester chain or any JSON-RPC node."""

from __future__ import annotations

import time
from typing import Any

from eth.estimators.gas import binary_gas_search_intrinsic_tolerance
from eth.vm.spoof import SpoofTransaction
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

DEV_BALANCE_WEI = 1_000_000 * 10**18

DEV_CHAIN_ID = 31337
"""anvil's (and Hardhat's) chain id: a local development chain."""


def mine_if_idle(w3: Web3) -> int:
    """Mine an empty block on an idle development node (chain id 31337); return the latest timestamp.

    Only when the latest block is older than the clock, so that calls and deadline checks see the
    current time: anvil in automine mode calls and estimates against its latest block, whose timestamp stands
    still on an idle chain. Public chains produce blocks on their own.
    """
    latest = int(w3.eth.get_block("latest")["timestamp"])
    if latest < time.time() - 1 and w3.eth.chain_id == DEV_CHAIN_ID:
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        latest = int(w3.eth.get_block("latest")["timestamp"])
    return latest


class ChainUnavailable(RuntimeError):
    """The JSON-RPC node cannot be reached or does not answer like an Ethereum node."""


def embedded_web3(num_accounts: int = 10) -> Web3:
    """A fresh in-process eth-tester (py-evm) chain with ``num_accounts`` unlocked, funded accounts.

    The chain lives in this process only; other processes reach it through the gateway.
    """
    if num_accounts < 1:
        raise ValueError("the embedded chain needs at least one account")
    genesis = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
    state = PyEVMBackend.generate_genesis_state(num_accounts=num_accounts)
    backend = PyEVMBackend(genesis_parameters=genesis, genesis_state=state)
    backend.chain.gas_estimator = estimate_gas
    return Web3(EthereumTesterProvider(EthereumTester(backend)))


def estimate_gas(state: Any, transaction: Any) -> int:
    """py-evm gas estimate in two executions instead of its binary search's ~14.

    Runs the transaction once with the block's gas limit and takes the gas it consumed before
    refunds, plus 1/63 of it (a call passes on at most 63/64 of the gas left, EIP-150); one
    more run checks that this limit suffices, else py-evm's binary search decides. A revert
    raises as py-evm's own estimator does.
    """
    limit = state.gas_limit
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        used = limit - computation.get_gas_remaining()
    finally:
        state.revert(snapshot)
    guess = min(limit, used + used // 63 + 1)
    snapshot = state.snapshot()
    try:
        if not state.apply_transaction(SpoofTransaction(transaction, gas=guess, gas_price=0)).is_error:
            return guess
    finally:
        state.revert(snapshot)
    return int(binary_gas_search_intrinsic_tolerance(state, transaction))


ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
"""Anvil's default dev mnemonic (public knowledge: local chains only)."""


def dev_accounts(w3: Web3, count: int | None = None) -> list[LocalAccount]:
    """Keys of the chain's unlocked, funded dev accounts (eth-tester, or anvil on chain id 31337).

    Transactions from them need no signing middleware; the keys are for EIP-712 signatures.
    """
    if is_embedded(w3):
        backend = w3.provider.ethereum_tester.backend  # type: ignore[attr-defined]
        keys = [Account.from_key(k.to_bytes()) for k in backend.account_keys]
    elif w3.eth.chain_id == DEV_CHAIN_ID:
        Account.enable_unaudited_hdwallet_features()
        n = count or len(w3.eth.accounts)
        keys = [Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(n)]
    else:
        raise ValueError("dev accounts exist only on the embedded chain and on anvil (chain id 31337)")
    return keys[:count] if count is not None else keys


def dev_key(index: int, namespace: str = "fedledger-dev") -> LocalAccount:
    """Deterministic development key number ``index`` (0 is the embedded chain's coordinator).

    Anyone can derive these keys: they are for local simulations only, never for real funds.
    """
    if index < 0:
        raise ValueError("dev key indices start at 0")
    return Account.from_key(keccak(text=f"{namespace}:{index}"))


def fund(w3: Web3, funder: str, addresses: list[str], amount_wei: int) -> None:
    """Send ``amount_wei`` from ``funder`` to each address."""
    hashes = [w3.eth.send_transaction({"from": funder, "to": a, "value": amount_wei}) for a in addresses]
    for tx_hash in hashes:
        w3.eth.wait_for_transaction_receipt(tx_hash)


def is_embedded(w3: Web3) -> bool:
    """True for the in-process eth-tester chain."""
    return isinstance(w3.provider, EthereumTesterProvider)


def connect(rpc_url: str, timeout: float = 10.0) -> Web3:
    """Connect to the JSON-RPC node at ``rpc_url``.

    Raises:
        ChainUnavailable: nothing answers at that URL, or not as an Ethereum node.
    """
    if not rpc_url.startswith(("http://", "https://")):
        raise ChainUnavailable(f"unsupported RPC URL {rpc_url!r}: use http:// or https://")
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}, cache_allowed_requests=True))
    try:
        w3.eth.chain_id  # noqa: B018 - a real request proves the node answers
    except Exception as exc:
        raise ChainUnavailable(f"cannot reach a JSON-RPC node at {rpc_url}: {type(exc).__name__}") from exc
    return w3


def use_account(w3: Web3, account: LocalAccount) -> str:
    """Let ``w3`` sign and send transactions from ``account`` locally; return its address."""
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    return str(account.address)


def new_funded_account(w3: Web3, funder: str, amount_wei: int) -> LocalAccount:
    """Create a key, fund it from ``funder`` and register it for signing on ``w3``."""
    account = Account.create()
    tx = w3.eth.send_transaction({"from": funder, "to": account.address, "value": amount_wei})
    w3.eth.wait_for_transaction_receipt(tx)
    use_account(w3, account)
    return account


def advance_time(w3: Web3, seconds: int) -> int:
    """Move chain time forward by ``seconds`` and mine a block; return the new block timestamp."""
    if seconds < 0:
        raise ValueError("time only moves forward")
    now = int(w3.eth.get_block("latest")["timestamp"])
    if is_embedded(w3):
        tester: EthereumTester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
        tester.time_travel(now + seconds)
        tester.mine_blocks(1)
    else:
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    return int(w3.eth.get_block("latest")["timestamp"])
