"""A task's rounds rebuilt from its events: FLTask v2 keeps only the current round in storage.

:class:`TaskHistory` applies events in chain order. It follows the member-index timeline
(``Registered`` takes an index, ``Exited`` frees it), so the member indices a ``RoundOpened``
announces resolve to the accounts that held them at that moment, and it records per round the
draw, commitments, votes, reveals, outcomes and payouts, and every account's stake and credited
balance from the money events. The gateway's round queries and the
audit both read rounds from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .bindings import Event
from .sortition import assignment, unpack
from .types import Phase, SlashReason, VoteMode

ZERO32 = b"\0" * 32


@dataclass
class RoundHistory:
    """One round as its events tell it."""

    round: int
    seed: bytes
    committee: list[int]
    eligible: list[int]
    proposers: list[str]
    voters: list[str]
    reviewers: int
    opened_block: int
    phase: Phase = Phase.TRAINING
    deadline: int = 0
    updates: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    candidate: bytes | None = None
    vote_commitments: dict[str, bytes] = field(default_factory=dict)
    """Voter -> commitment, in commit order (the order the vote digest chains them)."""
    reveals: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    canaries: dict[str, bytes] = field(default_factory=dict)
    """Proposer -> the preimage with which it declared its update a canary (contracts/canary.py)."""
    finalized: bool = False
    outcomes: int = 0
    decided: int = 0
    """Bit i: item i had a quorum of informed reviewers (the rest of the judged items got no verdict)."""
    tallies: list[int] = field(default_factory=list)
    round_reward: int = 0
    paid: int = 0
    slashed: int = 0
    rewards: dict[str, int] = field(default_factory=dict)
    slashes: dict[str, tuple[int, SlashReason]] = field(default_factory=dict)
    global_model_hash: bytes | None = None
    rejected: list[Event] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    """Hashes of the transactions that emitted this round's events, in chain order, each once."""

    def items(self, mode: VoteMode) -> list[list[int]]:
        """Each voter's items in the bit order of its vote (proposer seats, or [0]: the candidate)."""
        return assignment(len(self.proposers), len(self.voters), self.reviewers, mode is VoteMode.AGGREGATE)

    def voter_items(self, voter: str, mode: VoteMode) -> list[int]:
        """The items ``voter``'s vote covers."""
        return self.items(mode)[self.voters.index(voter)]

    def committed_votes(self) -> list[tuple[int, bytes]]:
        """(voter seat, commitment) in commit order: what a reveal brings to check the vote digest."""
        seats = {v: j for j, v in enumerate(self.voters)}
        return [(seats[v], c) for v, c in self.vote_commitments.items()]

    @property
    def committed_mask(self) -> int:
        """Bit i: proposer i committed its update."""
        return sum(1 << i for i, p in enumerate(self.proposers) if p in self.updates)


@dataclass
class TaskHistory:
    """Rounds and the member-index timeline of one task, from its events."""

    holders: dict[int, str] = field(default_factory=dict)
    """Member index -> the account holding it now."""
    rounds: dict[int, RoundHistory] = field(default_factory=dict)
    stakes: dict[str, int] = field(default_factory=dict)
    """Account -> its stake now (0 once it exited), from the money events."""
    owed: dict[str, int] = field(default_factory=dict)
    """Account -> its credited, not yet withdrawn balance (rewards and returned stakes)."""
    last_block: int = -1
    """The last block whose events were applied."""

    def apply_all(self, events: Iterable[Event]) -> None:
        """Apply events in chain order."""
        for event in events:
            self.apply(event)

    def apply(self, event: Event) -> None:
        """Apply one event (in chain order)."""
        self.last_block = max(self.last_block, event.block_number)
        args = event.args
        name = event.name
        if name == "Registered":
            self.holders[int(args["index"])] = args["account"]
        elif name == "Exited":
            for index, account in list(self.holders.items()):
                if account == args["account"]:
                    del self.holders[index]
        elif name == "RoundOpened":
            self._opened(event)
        if name in _MONEY:
            _MONEY[name](self, args)
        if (record := self.rounds.get(args.get("round", -1))) is not None:
            _ROUND_HANDLERS.get(name, lambda _r, _e: None)(record, event)
            if event.transaction_hash not in record.transactions[-1:]:
                record.transactions.append(event.transaction_hash)

    def _opened(self, event: Event) -> None:
        args = event.args
        num_p, num_v = int(args["numProposers"]), int(args["numVoters"])
        committee = unpack(list(args["committee"]), num_p + num_v)
        accounts = [self.holders.get(index, "") for index in committee]
        self.rounds[int(args["round"])] = RoundHistory(
            round=int(args["round"]),
            seed=bytes(args["seed"]),
            committee=committee,
            eligible=[int(w) for w in args["eligible"]],
            proposers=accounts[:num_p],
            voters=accounts[num_p:],
            reviewers=int(args["reviewers"]),
            opened_block=event.block_number,
            deadline=int(args["deadline"]),
        )

    def latest(self) -> RoundHistory | None:
        """The most recently opened round."""
        return self.rounds[max(self.rounds)] if self.rounds else None


def _credit(history: TaskHistory, account: str, amount: int) -> None:
    history.owed[account] = history.owed.get(account, 0) + amount


def _stake(history: TaskHistory, account: str, stake: int) -> None:
    history.stakes[account] = stake


def _exited(history: TaskHistory, args: dict[str, Any]) -> None:
    _credit(history, args["account"], int(args["stake"]))  # the stake comes back as a credit
    _stake(history, args["account"], 0)


def _slashed(history: TaskHistory, args: dict[str, Any]) -> None:
    _stake(history, args["account"], history.stakes.get(args["account"], 0) - int(args["amount"]))


_MONEY: dict[str, Callable[[TaskHistory, dict[str, Any]], None]] = {
    "Registered": lambda h, args: _stake(h, args["account"], int(args["stake"])),
    "StakeChanged": lambda h, args: _stake(h, args["account"], int(args["newStake"])),
    "Slashed": _slashed,
    "Exited": _exited,
    "Rewarded": lambda h, args: _credit(h, args["account"], int(args["amount"])),
    "Withdrawn": lambda h, args: _credit(h, args["account"], -int(args["amount"])),
}
"""How each money event moves an account's stake or credited balance, as the contract books it."""


def _phase(record: RoundHistory, event: Event) -> None:
    record.phase = Phase(event.args["phase"])
    record.deadline = int(event.args["deadline"])


def _update(record: RoundHistory, event: Event) -> None:
    record.updates[event.args["proposer"]] = (bytes(event.args["updateHash"]), int(event.args["numExamples"]))


def _candidate(record: RoundHistory, event: Event) -> None:
    record.candidate = bytes(event.args["candidateHash"])


def _vote(record: RoundHistory, event: Event) -> None:
    record.vote_commitments[event.args["voter"]] = bytes(event.args["commitment"])


def _reveal(record: RoundHistory, event: Event) -> None:
    record.reveals[event.args["voter"]] = (int(event.args["bits"]), bytes(event.args["salt"]))


def _canary(record: RoundHistory, event: Event) -> None:
    record.canaries[event.args["proposer"]] = bytes(event.args["preimage"])


def _finalized(record: RoundHistory, event: Event) -> None:
    args = event.args
    record.finalized = True
    record.phase = Phase.FINALIZED
    record.outcomes = int(args["outcomes"])
    record.decided = int(args["decided"])
    record.tallies = [int(t) for t in args["tallies"]]
    record.round_reward = int(args["roundReward"])
    record.paid = int(args["paid"])
    record.slashed = int(args["slashed"])


def _rewarded(record: RoundHistory, event: Event) -> None:
    record.rewards[event.args["account"]] = int(event.args["amount"])


def _slashed(record: RoundHistory, event: Event) -> None:
    record.slashes[event.args["account"]] = (int(event.args["amount"]), SlashReason(event.args["reason"]))


def _published(record: RoundHistory, event: Event) -> None:
    record.global_model_hash = bytes(event.args["modelHash"])


def _rejected(record: RoundHistory, event: Event) -> None:
    record.rejected.append(event)


_ROUND_HANDLERS = {
    "PhaseAdvanced": _phase,
    "UpdateCommitted": _update,
    "AggregateProposed": _candidate,
    "VoteCommitted": _vote,
    "VoteRevealed": _reveal,
    "CanaryDeclared": _canary,
    "RoundFinalized": _finalized,
    "Rewarded": _rewarded,
    "Slashed": _slashed,
    "GlobalPublished": _published,
    "ActionRejected": _rejected,
}
