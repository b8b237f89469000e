"""A participant's whole life in a task: stake, withdraw, exit, status; the owner's pool funding.

Each action is checked against the task's state first (member or not, anything owed, exit due,
inside a round), so that bad input costs no transaction and ends in one clear line. The actions
go through a gateway (signed here with the node's key: raw transactions for stake and pool, EIP-712
for exits and withdrawals) or straight to a JSON-RPC node (``--rpc-url`` with the deployment
manifest), the key signing locally in both cases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from eth_account.signers.local import LocalAccount

from fedledger.contracts import typed_data as td
from fedledger.contracts.history import RoundHistory, TaskHistory
from fedledger.contracts.types import MemberInfo, Phase, TaskConfig
from fedledger.errors import CommandError
from fedledger.tables import eth


def ether(wei: int) -> str:
    """``wei`` as ether for people: up to 6 decimals, no trailing zeros."""
    return f"{eth(wei).rstrip('0').rstrip('.')} ETH"


@dataclass(frozen=True)
class RoundState:
    """What an exit needs to know about the current round."""

    round: int
    phase: Phase
    proposers: tuple[str, ...]
    voters: tuple[str, ...]
    deadline: int = 0
    """When the current phase may be ended by anyone (chain time)."""


class Backend(Protocol):
    """Where the actions go: a gateway or a JSON-RPC node."""

    address: str
    task_address: str

    def config(self) -> TaskConfig:
        """The task's parameters."""
        ...

    def member(self) -> MemberInfo:
        """The node's standing in the task."""
        ...

    def balance(self) -> int:
        """The node account's wei."""
        ...

    def chain_time(self) -> int:
        """The latest block's timestamp."""
        ...

    def current_round(self) -> RoundState:
        """The task's current round."""
        ...

    def history(self) -> TaskHistory:
        """Every round of the task, from its events."""
        ...

    def add_stake(self, amount: int) -> str:
        """Add stake; returns the transaction hash."""
        ...

    def fund_pool(self, amount: int) -> str:
        """Add to the reward pool; returns the transaction hash."""
        ...

    def member_action(self, action: td.ActionType) -> str:
        """Request an exit, complete it or withdraw; returns the transaction hash."""
        ...

    def settle_step(self, function: str, round_: int) -> str:
        """Send ``advancePhase`` or ``finalizeRound`` of ``round_`` from the key's account; returns the hash."""
        ...


class GatewayBackend:
    """Actions through a gateway, signed with the node's key."""

    def __init__(self, client: object, key: LocalAccount | None, address: str | None = None) -> None:
        """Act as ``key`` through ``client`` (a :class:`~fedledger.server.gateway.client.GatewayClient`).

        Without a key (``address`` only) it can read, not act.
        """
        from fedledger.server.gateway.client import GatewayClient

        if not isinstance(client, GatewayClient):
            raise TypeError("GatewayBackend needs a GatewayClient")
        self.client = client
        self._key = key
        self.address = str(key.address) if key is not None else str(address)
        self.task_address = client.task().task_address

    @property
    def key(self) -> LocalAccount:
        """The signing key (read-only backends have none)."""
        if self._key is None:
            raise CommandError("this command needs --keystore: it signs")
        return self._key

    def config(self) -> TaskConfig:
        """The task's parameters."""
        return self.client.task().config

    def member(self) -> MemberInfo:
        """The node's standing in the task."""
        return self.client.member(self.address)

    def balance(self) -> int:
        """The node account's wei."""
        return int(self.client.account(self.address).balance_wei)

    def chain_time(self) -> int:
        """The gateway's chain time."""
        return int(self.client.round(brief=True).chain_time)

    def current_round(self) -> RoundState:
        """The task's current round, from the gateway's round state."""
        state = self.client.round()
        phase = Phase[state.phase]
        return RoundState(
            state.round,
            phase,
            tuple(p.address for p in state.proposers),
            tuple(v.address for v in state.voters),
            int(state.deadline),
        )

    def history(self) -> TaskHistory:
        """Every round, from the events the gateway serves."""
        from fedledger.audit.source import GatewaySource

        history = TaskHistory()
        history.apply_all(GatewaySource(self.client).events())
        return history

    def add_stake(self, amount: int) -> str:
        """A raw ``addStake`` transaction, signed here."""
        return "0x" + self.client.add_stake(self.key, amount).transaction_hash.hex()

    def fund_pool(self, amount: int) -> str:
        """A raw ``fundPool`` transaction, signed here."""
        raw = self.client.signed_transaction(self.key, "fundPool", value=amount)
        return "0x" + self.client.send_transaction(raw).transaction_hash.hex()

    def member_action(self, action: td.ActionType) -> str:
        """An EIP-712 signed exit or withdrawal, relayed by the gateway."""
        from fedledger.server.gateway.proto import gateway_pb2 as pb

        result = self.client.member_action(self.key, action)
        if result.status == pb.REJECTED:
            raise CommandError(f"the contract refused the {action.name}: {result.reason}")
        return "0x" + result.transaction_hash.hex()

    def settle_step(self, function: str, round_: int) -> str:
        """A raw ``advancePhase`` / ``finalizeRound`` signed here; the gateway relays what it queued first."""
        raw = self.client.signed_transaction(self.key, function, round_)
        return "0x" + self.client.send_transaction(raw).transaction_hash.hex()


class RpcBackend:
    """Actions sent straight to a JSON-RPC node, signed locally."""

    def __init__(self, rpc_url: str, deployment: Path, key: LocalAccount | None, address: str | None = None) -> None:
        """Act as ``key`` on the task of ``deployment`` at ``rpc_url`` (without a key: read ``address`` only)."""
        from fedledger.contracts.bindings import FLTaskContract
        from fedledger.deploy.chain import connect, use_account
        from fedledger.deploy.manifest import DeploymentManifest

        self.manifest = DeploymentManifest.load(deployment)
        self.w3 = connect(rpc_url)
        if self.w3.eth.chain_id != self.manifest.chain_id:
            raise CommandError(
                f"{rpc_url} is chain {self.w3.eth.chain_id}, the deployment's is {self.manifest.chain_id}"
            )
        self.address = use_account(self.w3, key) if key is not None else str(address)
        self.task = FLTaskContract(self.w3, self.manifest.task.address)
        self.task_address = self.task.address

    def config(self) -> TaskConfig:
        """The task's parameters."""
        return self.manifest.task_config

    def member(self) -> MemberInfo:
        """The node's standing in the task."""
        return self.task.member(self.address)

    def balance(self) -> int:
        """The node account's wei."""
        return int(self.w3.eth.get_balance(self.address))

    def chain_time(self) -> int:
        """The latest block's timestamp (an idle development chain mines a block first, so time moves)."""
        from fedledger.deploy.chain import mine_if_idle

        return mine_if_idle(self.w3)

    def current_round(self) -> RoundState:
        """The task's current round, from its views."""
        info = self.task.round_info()
        proposers, voters = self.task.committee()
        return RoundState(info.round, info.phase, tuple(proposers), tuple(voters), info.deadline)

    def history(self) -> TaskHistory:
        """Every round, from the task's events."""
        history = TaskHistory()
        history.apply_all(self.task.events(from_block=self.manifest.block_number))
        return history

    def add_stake(self, amount: int) -> str:
        """``addStake`` from the node's account."""
        return _hash(self.task.add_stake(self.address, amount))

    def fund_pool(self, amount: int) -> str:
        """``fundPool`` from the node's account."""
        return _hash(self.task.fund_pool(self.address, amount))

    def member_action(self, action: td.ActionType) -> str:
        """The direct form of the action, from the node's account."""
        send = {
            td.REQUEST_EXIT.name: self.task.request_exit,
            td.COMPLETE_EXIT.name: self.task.complete_exit,
            td.WITHDRAW.name: self.task.withdraw,
        }[action.name]
        return _hash(send(self.address))

    def settle_step(self, function: str, round_: int) -> str:
        """``advancePhase`` / ``finalizeRound`` from the key's account."""
        send = {"advancePhase": self.task.advance_phase, "finalizeRound": self.task.finalize_round}[function]
        return _hash(send(self.address, round_))


def _hash(sent: object) -> str:
    from hexbytes import HexBytes

    return HexBytes(sent.receipt["transactionHash"]).to_0x_hex()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------- actions


def add_stake(backend: Backend, amount: int) -> str:
    """Add ``amount`` wei of stake; returns what was done, in one line."""
    if amount <= 0:
        raise CommandError("--add must be a positive amount of ether")
    member = backend.member()
    if not member.registered:
        raise CommandError(f"{backend.address} is not a member of the task: join it first (`fedledger node join`)")
    if member.exiting:
        raise CommandError(f"{backend.address} asked to exit: it cannot add stake any more")
    if backend.balance() < amount:
        raise CommandError(
            f"{backend.address} holds {ether(backend.balance())}, less than the {ether(amount)} to stake (plus gas)"
        )
    tx = backend.add_stake(amount)
    return f"stake {ether(member.stake)} -> {ether(member.stake + amount)} (transaction {tx})"


def withdraw(backend: Backend) -> str:
    """Pull everything credited to the node (rewards, released stake)."""
    member = backend.member()
    if member.owed == 0:
        raise CommandError(f"{backend.address} has nothing to withdraw")
    tx = backend.member_action(td.WITHDRAW)
    return f"withdrew {ether(member.owed)} to {backend.address} (transaction {tx})"


def exit_task(backend: Backend, now: int | None = None) -> str:
    """The next step of leaving: request the exit, or (once due) complete it and withdraw the stake."""
    member = backend.member()
    if not member.registered:
        raise CommandError(f"{backend.address} is not a member of the task")
    if not member.exiting:
        tx = backend.member_action(td.REQUEST_EXIT)
        ready = backend.member().exit_ready_at
        return (
            f"exit requested (transaction {tx}); no longer drawn. Run `fedledger node exit` again from "
            f"{_when(ready)} to complete it and withdraw the stake"
        )
    now = backend.chain_time() if now is None else now
    if now < member.exit_ready_at:
        raise CommandError(
            f"the exit is not due yet: {_left(member.exit_ready_at - now)} left (from {_when(member.exit_ready_at)})"
        )
    current = backend.current_round()
    seated = backend.address in current.proposers + current.voters
    if seated and current.phase not in (Phase.NONE, Phase.FINALIZED):
        raise CommandError(
            f"{backend.address} holds a seat in round {current.round}, which is still {current.phase.name.lower()}: "
            "the exit can be completed once that round is finalized"
        )
    stake = member.stake
    completed = backend.member_action(td.COMPLETE_EXIT)
    paid = backend.member_action(td.WITHDRAW)
    return (
        f"exited (transaction {completed}); withdrew {ether(stake + member.owed)}, stake included (transaction {paid})"
    )


def settle_round(backend: Backend, round_: int, now: int | None = None) -> str:
    """Advance and finalize ``round_`` once its deadlines passed, as the contract lets anyone do.

    For a round a crashed coordinator left behind: the next ``fedledger coordinate`` resumes
    after it. Refuses (one clear line) when a deadline is still ahead, saying how long, or when
    the round is settled already.
    """
    steps: list[str] = []
    while True:
        state = backend.current_round()
        if round_ < state.round or (round_ == state.round and state.phase is Phase.FINALIZED):
            raise CommandError(
                f"round {round_} is settled already (the task is at round {state.round}, {_phase(state)})"
            )
        if round_ > state.round or state.phase is Phase.NONE:
            raise CommandError(f"round {round_} has not been opened (the task is at round {state.round})")
        clock = backend.chain_time() if now is None else now
        if clock <= state.deadline:
            raise _deadline_ahead(round_, state, state.deadline - clock, steps)
        function = "finalizeRound" if state.phase is Phase.REVEALING else "advancePhase"
        try:
            tx = backend.settle_step(function, round_)
        except Exception as exc:
            # The block the step lands in can be stamped a second before the clock read above
            # (a dev chain's next block, a public chain's slot): the same refusal, not a failure.
            if "PhaseNotOver" not in str(exc):
                raise
            raise _deadline_ahead(round_, state, 1, steps) from exc
        if function == "finalizeRound":
            return f"round {round_} settled: {', '.join([*steps, f'finalized in {tx}'])}"
        steps.append(f"{state.phase.name.lower()} ended in {tx}")


def _deadline_ahead(round_: int, state: RoundState, seconds: int, steps: list[str]) -> CommandError:
    done = f" (done: {', '.join(steps)})" if steps else ""
    return CommandError(
        f"round {round_} is {_phase(state)} until its deadline, {_left(seconds)} from now: settle it after that{done}"
    )


def _phase(state: RoundState) -> str:
    return state.phase.name.lower()


def fund_pool(backend: Backend, amount: int) -> str:
    """Add ``amount`` wei to the task's reward pool."""
    if amount <= 0:
        raise CommandError("--pool must be a positive amount of ether")
    if backend.balance() < amount:
        raise CommandError(f"{backend.address} holds {ether(backend.balance())}, less than the {ether(amount)} to add")
    tx = backend.fund_pool(amount)
    return f"added {ether(amount)} to the reward pool (transaction {tx})"


@dataclass(frozen=True)
class RoundLine:
    """One of the node's rounds, as the events tell it."""

    round: int
    role: str
    acted: str
    outcome: str
    rewarded_wei: int
    slashed_wei: int


def my_rounds(history: TaskHistory, address: str, last: int = 5) -> list[RoundLine]:
    """The node's last ``last`` rounds: its role, what it did and how it ended."""
    lines = [
        _line(record, address)
        for record in sorted(history.rounds.values(), key=lambda r: r.round)
        if address in record.proposers or address in record.voters
    ]
    return lines[-last:]


def _line(record: RoundHistory, address: str) -> RoundLine:
    proposer = address in record.proposers
    if proposer:
        acted = "committed" if address in record.updates else "-"
    else:
        acted = "revealed" if address in record.reveals else "committed" if address in record.vote_commitments else "-"
    slashed, reason = record.slashes.get(address, (0, None))
    if not record.finalized:
        outcome = "open"
    elif address in record.rewards:
        outcome = "accepted" if proposer else "winning side"
    elif reason is not None:
        outcome = reason.name.lower().replace("_", " ")
    else:
        outcome = "not judged" if proposer else "neutral"
    role = "proposer" if proposer else "voter"
    return RoundLine(record.round, role, acted, outcome, record.rewards.get(address, 0), slashed)


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _left(seconds: int) -> str:
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
