"""Shared fixtures: a task deployed on a fresh embedded chain, with helpers to drive rounds."""

from __future__ import annotations

import os

# Two pytest-xdist workers share two cores. torch, MKL and OpenBLAS would each start a thread per
# core in every worker and in every process a test starts, and their OpenMP threads spin while
# they wait: a FedKSeed test that takes 18 s alone took 250 s beside the other worker. One
# thread each (set before anything imports torch) computes the same numbers: fedledger's
# participants and coordinator run on one thread anyway.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from fedledger.contracts import typed_data as td
from fedledger.contracts.bindings import FLTaskContract, FLTaskFactoryContract, Sent
from fedledger.contracts.errors import ContractRevert
from fedledger.contracts.history import TaskHistory
from fedledger.contracts.settlement import ProposerSeat, RoundInput, Settlement, VoterSeat, settle
from fedledger.contracts.types import Phase, RoundOpened, TaskConfig
from fedledger.deploy.anvil import AnvilNode, find_anvil
from fedledger.deploy.chain import advance_time, dev_accounts, embedded_web3
from fedledger.deploy.deployer import deploy_task

ETH = 10**18


def fedledger(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the ``fedledger`` command line in a fresh interpreter, with this environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "fedledger.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def require_anvil() -> None:
    """Skip the calling test when anvil is not installed, unless FEDLEDGER_REQUIRE_ANVIL=1 (set by CI): then fail."""
    if find_anvil() is None:
        if os.environ.get("FEDLEDGER_REQUIRE_ANVIL") == "1":
            pytest.fail("anvil is required (FEDLEDGER_REQUIRE_ANVIL=1) but not installed; run `npm ci`")
        pytest.skip("anvil not installed (npm ci)")


def assert_books_balance(node_url: str, manifest: Path, members: list[str]) -> None:
    """The contract invariant: the task holds exactly its ``members``' stakes, what it owes them and the pool."""
    from fedledger.deploy.chain import connect
    from fedledger.deploy.manifest import DeploymentManifest

    w3 = connect(node_url)
    task = FLTaskContract(w3, DeploymentManifest.load(manifest).task.address)
    held = sum(m.stake + m.owed for m in map(task.member, members)) + task.reward_pool()
    assert w3.eth.get_balance(task.address) == held


def model_hash(label: str) -> bytes:
    """A deterministic 32-byte stand-in for a model hash."""
    return keccak(text=label)


@dataclass
class Harness:
    """A deployed task plus the accounts and shortcuts the tests use."""

    w3: Web3
    task: FLTaskContract
    factory: FLTaskFactoryContract
    config: TaskConfig
    coordinator: str
    relayer: str
    participants: list[LocalAccount]
    libraries: dict[str, str] = field(default_factory=dict)
    salts: dict[tuple[int, str], bytes] = field(default_factory=dict)
    finalizing: dict[int, Sent] = field(default_factory=dict)
    """Per round, the reveal that finalized it (the last reveal does)."""

    @property
    def addresses(self) -> list[str]:
        return [a.address for a in self.participants]

    def key(self, address: str) -> LocalAccount:
        return next(a for a in self.participants if a.address == address)

    def register(self, count: int, stake: int | list[int] = 2 * ETH) -> list[str]:
        stakes = stake if isinstance(stake, list) else [stake] * count
        for account, amount in zip(self.participants[:count], stakes, strict=True):
            self.task.register(account.address, amount)
        return self.addresses[:count]

    def open(self) -> RoundOpened:
        opened, _ = self.task.open_round(self.coordinator)
        return opened

    def commit_update(self, proposer: str, label: str | None = None, examples: int = 100) -> Sent:
        r = self.task.current_round()
        return self.task.commit_update(proposer, r, model_hash(label or f"update-{r}-{proposer}"), examples)

    def commit_vote(self, voter: str, bits: int) -> Sent:
        r = self.task.current_round()
        salt = secrets.token_bytes(32)
        self.salts[(r, voter)] = salt
        return self.task.commit_vote(voter, r, self.task.vote_commitment(r, bits, salt, voter))

    def reveal_vote(self, voter: str, bits: int) -> Sent:
        r = self.task.current_round()
        sent = self.task.reveal_vote(voter, r, bits, self.salts[(r, voter)])
        if sent.named("RoundFinalized"):
            self.finalizing[r] = sent
        return sent

    def finalize(self, round_: int) -> Sent:
        """The transaction that finalized ``round_``: its last reveal, or a finalizeRound sent now."""
        if round_ in self.finalizing:
            return self.finalizing[round_]
        sent = self.task.finalize_round(self.coordinator, round_)
        self.finalizing[round_] = sent
        return sent

    def history(self) -> TaskHistory:
        """The task's rounds as its events tell them."""
        history = TaskHistory()
        history.apply_all(self.task.events())
        return history

    def reference(self, round_: int, before: dict[str, Any], pool: int) -> Settlement:
        """What the reference settlement says round ``round_`` must settle, from its events and the
        members (``before``: ``member()`` of each seat) and pool as they were when it opened."""
        record = self.history().rounds[round_]
        mode = self.config.vote_mode
        return settle(
            RoundInput(
                vote_mode=mode,
                stake_weighted=self.config.stake_weighted,
                slash_rate_bps=self.config.slash_rate_bps,
                total_rounds=self.config.total_rounds,
                round=round_,
                reward_pool=pool,
                voter_reward_bps=self.config.voter_reward_bps,
                proposers=[
                    ProposerSeat(p, before[p].stake, p in record.updates, before[p].standing, p in record.canaries)
                    for p in record.proposers
                ],
                voters=[
                    VoterSeat(
                        v,
                        before[v].stake,
                        v in record.vote_commitments,
                        v in record.reveals,
                        record.reveals.get(v, (0, b""))[0],
                        before[v].standing,
                    )
                    for v in record.voters
                ],
                has_candidate=record.candidate is not None,
                items=record.items(mode),
                quorum=self.config.quorum,
                min_stake=self.config.min_stake,
            )
        )

    def sign(self, action: td.ActionType, message: dict[str, Any]) -> td.SignedAction:
        signer = self.key(message[action.signer_field])
        return td.sign_action(signer, action, message, self.task.domain())

    def deadline(self, seconds: int = 3600) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"]) + seconds

    def advance(self, seconds: int) -> int:
        return advance_time(self.w3, seconds)

    def phase(self) -> Phase:
        return self.task.round_info().phase

    def snapshot(self) -> dict[str, Any]:
        """Everything a failed action must leave unchanged."""
        r = self.task.current_round()
        return {
            "balance": self.task.balance(),
            "pool": self.task.reward_pool(),
            "round": r,
            "round_info": self.task.round_info(),
            "members": self.task.members(),
            "infos": [self.task.member(a) for a in self.addresses[:12]],
            "global": self.task.global_model_hash(),
        }

    def expect_revert(self, error: str, action: Callable[[], object], **params: Any) -> ContractRevert:
        """Run ``action``, assert it reverts with ``error`` (and ``params``) and changes nothing."""
        before = self.snapshot()
        with pytest.raises(ContractRevert) as info:
            action()
        assert info.value.error == error, info.value.describe()
        for name, value in params.items():
            assert info.value.params[name] == value, info.value.describe()
        assert self.snapshot() == before
        return info.value

    def stake_sum(self) -> int:
        return sum(self.task.member(a).stake for a in self.task.members())

    def owed_sum(self) -> int:
        return sum(self.task.member(a).owed for a in self.addresses)


DEFAULTS: dict[str, Any] = {
    "initial_model_hash": model_hash("initial"),
    "total_rounds": 5,
    "min_stake": 1 * ETH,
    "proposer_share_bps": 5_000,
    "max_committee": 10,
    "slash_rate_bps": 1_000,
    "voter_reward_bps": 2_000,
    "quorum": 1,  # the tests of quorums and abstentions set their own
    "training_duration": 600,
    "voting_duration": 300,
    "reveal_duration": 300,
    "exit_delay": 3_600,
}


def make_harness(w3: Web3, pool: int = 100 * ETH, **overrides: Any) -> Harness:
    keys = dev_accounts(w3)
    coordinator, relayer = keys[0].address, keys[1].address
    config = TaskConfig(**{**DEFAULTS, "coordinator": coordinator, **overrides})
    manifest, task = deploy_task(w3, coordinator, config, pool_wei=pool)
    factory = FLTaskFactoryContract(w3, manifest.factory.address)
    libraries = {name: record.address for name, record in manifest.libraries.items()}
    return Harness(w3, task, factory, config, coordinator, relayer, keys[2:], libraries)


@pytest.fixture
def chain() -> Web3:
    """A fresh embedded chain with 24 funded dev accounts."""
    return embedded_web3(num_accounts=24)


@pytest.fixture
def deploy(chain: Web3) -> Callable[..., Harness]:
    """Deploy a task on the fresh chain; keyword arguments override TaskConfig fields."""
    return lambda pool=100 * ETH, **overrides: make_harness(chain, pool, **overrides)


@pytest.fixture
def h(deploy: Callable[..., Harness]) -> Harness:
    """A per-update task with default parameters."""
    return deploy()


@pytest.fixture
def anvil_url() -> Iterator[str]:
    """An anvil node on a free 127.0.0.1 port, stopped by PID afterwards.

    Skipped when anvil is not installed, unless FEDLEDGER_REQUIRE_ANVIL=1 (set by CI).
    """
    require_anvil()
    node = AnvilNode(accounts=24)
    node.start()
    try:
        yield node.url
    finally:
        node.stop()
