"""The gateway's view of the chain: one task, one relayer key, one lock.

eth-tester is not thread-safe and a JSON-RPC provider is cheaper used one request at a time,
so every chain access of the gateway goes through :meth:`Ledger.run` under a single lock.
Connection failures become :class:`~fedledger.deploy.chain.ChainUnavailable`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ProviderConnectionError, TimeExhausted

from fedledger.contracts.bindings import FLTaskContract
from fedledger.contracts.history import RoundHistory, TaskHistory
from fedledger.contracts.typed_data import Domain
from fedledger.contracts.types import RoundInfo, TaskConfig
from fedledger.deploy.chain import (
    DEV_CHAIN_ID,
    ChainUnavailable,
    connect,
    dev_key,
    embedded_web3,
    fund,
    is_embedded,
    mine_if_idle,
    use_account,
)
from fedledger.deploy.deployer import deploy_task
from fedledger.deploy.manifest import DeploymentManifest

T = TypeVar("T")

STATE_TTL = 0.25
"""Seconds the current round, its state and the chain time are reused between reads.

Many clients poll the round while waiting for a phase; sharing one read per 250 ms keeps them
from starving the relayer. Every transaction the gateway sends invalidates the cache, so only
changes made by others (e.g. someone advancing after a deadline) are seen up to 250 ms late.
"""

DEV_FUNDS_WEI = 1_000 * 10**18

_CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ProviderConnectionError,
    TimeExhausted,
    ConnectionError,
)


@dataclass(frozen=True)
class Committee:
    """Proposers and voters of a round (immutable once the round is open)."""

    proposers: tuple[str, ...]
    voters: tuple[str, ...]


class Ledger:
    """Serialized access to one deployed task."""

    def __init__(self, w3: Web3, manifest: DeploymentManifest, relayer: str, rpc_url: str | None = None) -> None:
        """Wrap a connected ``w3`` for the task in ``manifest``; ``relayer`` pays the gas."""
        self.w3 = w3
        self.manifest = manifest
        self.relayer = relayer
        self.rpc_url = rpc_url
        self.task = FLTaskContract(w3, manifest.task.address)
        self.config: TaskConfig = manifest.task_config
        self.chain_id = manifest.chain_id
        self.domain = Domain(chain_id=self.chain_id, verifying_contract=self.task.address)
        """The EIP-712 domain of the task (fixed: computed once, no chain request per signature)."""
        self._lock = threading.RLock()
        self._cache: dict[object, tuple[float, object]] = {}
        self._history = TaskHistory()
        self._scanned = manifest.block_number - 1
        """The last block whose task events :attr:`_history` holds."""

    @property
    def embedded(self) -> bool:
        """True for the in-process eth-tester chain."""
        return is_embedded(self.w3)

    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (which touches the chain) under the ledger lock."""
        with self._lock:
            try:
                return fn()
            except _CONNECTION_ERRORS as exc:
                where = self.rpc_url or "the embedded chain"
                raise ChainUnavailable(f"chain at {where} is unreachable: {type(exc).__name__}") from exc

    def _cached(self, key: object, read: Callable[[], T]) -> T:
        with self._lock:
            hit = self._cache.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[0] < STATE_TTL:
                return hit[1]  # type: ignore[return-value]
            value = self.run(read)
            self._cache[key] = (now, value)
            return value

    def invalidate(self) -> None:
        """Forget cached state (after sending a transaction)."""
        with self._lock:
            self._cache.clear()

    def send(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, which sends a transaction, and invalidate the cached state."""
        try:
            with self._lock:
                self._sync_clock()
                return self.run(fn)
        finally:
            self.invalidate()

    def _sync_clock(self) -> None:
        """Bring an idle development chain's clock up to the wall clock.

        eth-tester stamps a pending block when the previous one is mined, and anvil in automine
        mode estimates and calls against its latest block: on an idle chain block.timestamp
        stands still and deadlines never pass. eth-tester time-travels; a dev node (chain id
        31337) mines an empty block. Public chains produce blocks on their own.
        """
        now = int(time.time())
        if self.embedded:
            tester = self.w3.provider.ethereum_tester  # type: ignore[attr-defined]
            if int(tester.get_block_by_number("pending")["timestamp"]) < now:
                tester.time_travel(now)
        elif self.chain_id == DEV_CHAIN_ID:
            mine_if_idle(self.w3)

    def chain_time(self) -> int:
        """Timestamp of the latest block; on the embedded or a dev chain at least the clock's.

        Those chains' next transaction sees the clock (:meth:`send` brings an idle one's time up
        first), so a deadline that passed on the clock has passed for it: a client deciding from
        this time (``round settle``) must not wait for an unrelated block to be mined.
        """
        latest = self._cached("time", lambda: int(self.w3.eth.get_block("latest")["timestamp"]))
        return max(latest, int(time.time())) if self.embedded or self.chain_id == DEV_CHAIN_ID else latest

    def current_round(self) -> int:
        """The task's current round."""
        return self._cached("round", self.task.current_round)

    def round_info(self) -> RoundInfo:
        """Public state of the current round (the contract keeps no other)."""
        return self._cached("info", lambda: self.task.round_info())

    def history(self) -> TaskHistory:
        """Every round so far, from the task's events (new blocks are read at most every STATE_TTL)."""
        return self._cached("history", self._sync_history)

    def _sync_history(self) -> TaskHistory:
        latest = int(self.w3.eth.block_number)
        if latest > self._scanned:
            self._history.apply_all(self.task.events(from_block=self._scanned + 1, to_block=latest))
            self._scanned = latest
        return self._history

    def round_history(self, round_: int) -> RoundHistory | None:
        """What the events tell of ``round_``, or None when it was never opened."""
        return self.history().rounds.get(round_)

    def committee(self, round_: int) -> Committee:
        """Proposers and voters of ``round_`` (empty when it was never opened)."""
        record = self.round_history(round_)
        if record is None:
            return Committee((), ())
        return Committee(tuple(record.proposers), tuple(record.voters))

    def ping(self) -> bool:
        """True when the chain answers."""
        try:
            self.run(lambda: self.w3.eth.block_number)
        except ChainUnavailable:
            return False
        return True


def open_embedded(
    config_fields: dict[str, object],
    *,
    dev_accounts: int = 0,
    pool_wei: int = 100 * 10**18,
    dev_funds_wei: int = DEV_FUNDS_WEI,
) -> tuple[Ledger, list[LocalAccount]]:
    """Start an in-process chain, deploy a task and fund dev accounts.

    The coordinator is dev key 0; participants are dev keys 1..``dev_accounts``; all are
    funded with ``dev_funds_wei``. The relayer and deployer is the chain's first account.
    """
    w3 = embedded_web3(num_accounts=1)
    funder = w3.eth.accounts[0]
    coordinator = dev_key(0)
    participants = [dev_key(i) for i in range(1, dev_accounts + 1)]
    fund(w3, funder, [coordinator.address, *(p.address for p in participants)], dev_funds_wei)
    config = TaskConfig.model_validate({"coordinator": coordinator.address, **config_fields})
    manifest, _ = deploy_task(w3, funder, config, pool_wei=pool_wei)
    return Ledger(w3, manifest, relayer=funder), [coordinator, *participants]


def open_rpc(rpc_url: str, deployment: Path, relayer: LocalAccount) -> Ledger:
    """Connect to a JSON-RPC node for the task described in the ``deployment`` manifest."""
    manifest = DeploymentManifest.load(deployment)
    w3 = connect(rpc_url)
    if w3.eth.chain_id != manifest.chain_id:
        raise ChainUnavailable(
            f"{rpc_url} is chain {w3.eth.chain_id}, but the deployment is on chain {manifest.chain_id}"
        )
    if not w3.eth.get_code(manifest.task.address):
        raise ChainUnavailable(f"no contract at {manifest.task.address} on {rpc_url}; wrong deployment file?")
    return Ledger(w3, manifest, relayer=use_account(w3, relayer), rpc_url=rpc_url)
