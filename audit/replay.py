"""Rebuild a task's history from its events alone and check it against the contract rules.

:func:`replay` walks the events in chain order, keeping its own books (members and their member
indices, stakes, credited balances, the reward pool) and, per round, the roles, commitments,
votes and payouts. It recomputes every eligibility bitmap from the books, every draw (reference
sortition), every reviewer assignment, every reveal against its commitment and every settlement
(reference settlement), and records each place where the chain disagrees with the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fedledger.contracts import canary, sortition
from fedledger.contracts.bindings import Event
from fedledger.contracts.settlement import ProposerSeat, RoundInput, Settlement, VoterSeat, settle
from fedledger.contracts.types import (
    EJECT_STANDING,
    SlashReason,
    TaskConfig,
    VoteMode,
    vote_commitment,
    vote_problem,
)

ZERO32 = b"\0" * 32


@dataclass
class MemberBooks:
    """What the replay knows about one account."""

    address: str
    registered: bool = False
    exiting: bool = False
    index: int | None = None
    stake: int = 0
    owed: int = 0
    standing: int = 0
    """Fixed-point record of rejections (the settlement rules'; kept across an exit and a new registration)."""
    seal: bytes = ZERO32
    """Its canary seal (the low 224 bits the contract keeps) and the round it was set in."""
    sealed_in: int = 0
    history: list[Event] = field(default_factory=list)


@dataclass
class RoundRecord:
    """One round as the events tell it."""

    round: int
    seed: bytes = ZERO32
    proposers: list[str] = field(default_factory=list)
    voters: list[str] = field(default_factory=list)
    committee: list[int] = field(default_factory=list)
    reviewers: int = 0
    items: list[list[int]] = field(default_factory=list)
    """Per voter, the items its vote's bits cover (proposer seats, or [0] for the candidate)."""
    updates: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    candidate: bytes | None = None
    vote_commitments: dict[str, bytes] = field(default_factory=dict)
    reveals: dict[str, int] = field(default_factory=dict)
    canaries: set[str] = field(default_factory=set)
    """Proposers that declared their update a canary."""
    finalized: bool = False
    tallies: list[int] = field(default_factory=list)
    outcomes: int = 0
    decided: int = 0
    ejected: list[str] = field(default_factory=list)
    round_reward: int = 0
    rewards: dict[str, int] = field(default_factory=dict)
    slashes: dict[str, tuple[int, SlashReason]] = field(default_factory=dict)
    global_model_hash: bytes | None = None
    rejected_actions: list[Event] = field(default_factory=list)
    expected: Settlement | None = None


@dataclass
class Replay:
    """The rebuilt books, per round and per member, and every disagreement found."""

    config: TaskConfig
    rounds: dict[int, RoundRecord] = field(default_factory=dict)
    members: dict[str, MemberBooks] = field(default_factory=dict)
    holders: dict[int, str] = field(default_factory=dict)
    """Member index -> the account holding it."""
    reward_pool: int = 0
    global_model_hash: bytes = ZERO32
    disagreements: list[str] = field(default_factory=list)

    def disagree(self, where: str, message: str) -> None:
        """Record that the chain does not follow the rules at ``where``."""
        self.disagreements.append(f"{where}: {message}")

    def books(self, address: str) -> MemberBooks:
        """The books of ``address`` (created empty on first use)."""
        return self.members.setdefault(address, MemberBooks(address))

    def eligible(self) -> list[int]:
        """Member indices the next draw may pick: registered, not exiting, staking at least the minimum, not ejected."""
        return sorted(
            i
            for i, a in self.holders.items()
            if not self.members[a].exiting
            and self.members[a].stake >= self.config.min_stake
            and self.members[a].standing < EJECT_STANDING
        )


def replay(events: Iterable[Event], config: TaskConfig) -> Replay:
    """Replay ``events`` (chain order) of a task with parameters ``config``."""
    state = Replay(config=config, global_model_hash=config.initial_model_hash)
    before_tx: dict[str, tuple[dict[str, int], int]] = {}
    for event in events:
        if event.transaction_hash not in before_tx:
            before_tx[event.transaction_hash] = ({a: m.stake for a, m in state.members.items()}, state.reward_pool)
        _apply(state, event, before_tx[event.transaction_hash])
    return state


def _apply(state: Replay, event: Event, before: tuple[dict[str, int], int]) -> None:
    args = event.args
    where = f"block {event.block_number} {event.name}"
    involved = {v for value in args.values() for v in (value if isinstance(value, list | tuple) else [value])}
    for address in involved:
        if isinstance(address, str) and address in state.members:
            state.members[address].history.append(event)
    handler = _HANDLERS.get(event.name)
    if handler is not None:
        handler(state, event, where, before)


def _registered(state: Replay, event: Event, where: str, _before: object) -> None:
    books = state.books(event.args["account"])
    if books.registered:
        state.disagree(where, f"{books.address} registered twice")
    books.registered, books.exiting = True, False
    index = int(event.args["index"])
    if index in state.holders:
        state.disagree(where, f"{books.address} took index {index}, which {state.holders[index]} holds")
    if index != min(set(range(len(state.holders) + 1)) - set(state.holders)):
        state.disagree(where, f"{books.address} took index {index}, not the lowest free one")
    books.index = index
    state.holders[index] = books.address
    books.stake = int(event.args["stake"])
    if not books.history or books.history[-1] is not event:
        books.history.append(event)


def _stake_changed(state: Replay, event: Event, where: str, _before: object) -> None:
    books = state.books(event.args["account"])
    if books.stake != event.args["oldStake"]:
        state.disagree(where, f"{books.address} had stake {books.stake}, the event says {event.args['oldStake']}")
    books.stake = event.args["newStake"]


def _exit_requested(state: Replay, event: Event, where: str, _before: object) -> None:
    state.books(event.args["account"]).exiting = True


def _exited(state: Replay, event: Event, where: str, _before: object) -> None:
    books = state.books(event.args["account"])
    if books.stake != event.args["stake"]:
        state.disagree(where, f"{books.address} left with {event.args['stake']} wei but staked {books.stake}")
    if books.index is not None:
        state.holders.pop(books.index, None)
    books.registered, books.exiting, books.index = False, False, None
    books.owed += event.args["stake"]
    books.stake = 0


def _pool_funded(state: Replay, event: Event, where: str, _before: object) -> None:
    state.reward_pool += event.args["amount"]


def _withdrawn(state: Replay, event: Event, where: str, _before: object) -> None:
    books = state.books(event.args["account"])
    if event.args["amount"] != books.owed:
        state.disagree(where, f"{books.address} withdrew {event.args['amount']} but was owed {books.owed}")
    books.owed -= event.args["amount"]


def _round_opened(state: Replay, event: Event, where: str, _before: object) -> None:
    args = event.args
    num_p, num_v = int(args["numProposers"]), int(args["numVoters"])
    committee = sortition.unpack(list(args["committee"]), num_p + num_v)
    accounts = [state.holders.get(index, "") for index in committee]
    record = RoundRecord(round=args["round"], seed=bytes(args["seed"]), committee=committee)
    record.proposers, record.voters = accounts[:num_p], accounts[num_p:]
    record.reviewers = int(args["reviewers"])
    config = state.config
    aggregate = config.vote_mode is VoteMode.AGGREGATE
    state.rounds[record.round] = record
    r = f"round {record.round}"
    eligible = state.eligible()
    announced = sortition.bitmap_indices(args["eligible"])
    if announced != eligible:
        state.disagree(where, f"{r} was drawn from members {announced}, but the eligible ones were {eligible}")
    try:
        expected, expected_p = sortition.draw_committee(
            eligible, record.seed, config.max_committee, config.proposer_share_bps
        )
    except ValueError as exc:
        state.disagree(where, f"{r} opened although {exc}")
        return
    if (expected, expected_p) != (committee, num_p):
        state.disagree(where, f"{r} roles differ from the draw of its seed over the eligible members")
    k = num_v if aggregate else sortition.effective_reviewers(config.reviewers_per_update, num_p, num_v)
    if record.reviewers != k:
        state.disagree(where, f"{r} announces {record.reviewers} reviewers per update, the rules give {k}")
    record.items = sortition.assignment(num_p, num_v, k, aggregate)


def _record(state: Replay, event: Event, where: str) -> RoundRecord | None:
    record = state.rounds.get(event.args["round"])
    if record is None:
        state.disagree(where, f"event for round {event.args['round']}, which was never opened")
    return record


def _update_committed(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    if record is not None:
        proposer = event.args["proposer"]
        if proposer not in record.proposers:
            state.disagree(where, f"{proposer} committed an update without being a proposer")
        record.updates[proposer] = (bytes(event.args["updateHash"]), event.args["numExamples"])


def _aggregate_proposed(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    if record is not None:
        record.candidate = bytes(event.args["candidateHash"])


def _vote_committed(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    if record is not None:
        if event.args["voter"] not in record.voters:
            state.disagree(where, f"{event.args['voter']} voted without being a voter")
        record.vote_commitments[event.args["voter"]] = bytes(event.args["commitment"])


def _vote_revealed(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    if record is None:
        return
    voter, bits = event.args["voter"], event.args["bits"]
    committed = record.vote_commitments.get(voter)
    if committed is None:
        state.disagree(where, f"{voter} revealed without a commitment")
    else:
        candidate = record.candidate if state.config.vote_mode is VoteMode.AGGREGATE and record.candidate else ZERO32
        if vote_commitment(event.address, record.round, candidate, bits, bytes(event.args["salt"]), voter) != committed:
            state.disagree(where, f"the reveal of {voter} does not hash to its commitment")
    if voter in record.voters:
        problem = vote_problem(bits, len(record.items[record.voters.index(voter)]))
        if problem:
            state.disagree(where, f"{voter} revealed a vote the contract must refuse: {problem}")
    record.reveals[voter] = bits


def _canary_sealed(state: Replay, event: Event, _where: str, _before: object) -> None:
    books = state.books(event.args["account"])
    books.seal, books.sealed_in = canary.seal_bits(bytes(event.args["seal"])), event.args["afterRound"]


def _canary_declared(state: Replay, event: Event, where: str, _before: object) -> None:
    """The contract's checks of a declaration, again: its window, its seat, its seal and its lottery."""
    record = _record(state, event, where)
    proposer, preimage = event.args["proposer"], bytes(event.args["preimage"])
    books = state.books(proposer)
    if record is None:
        return
    r = record.round
    if proposer not in record.updates:
        state.disagree(where, f"round {r}: {proposer} declared a canary without a committed update")
    if record.reveals:
        state.disagree(where, f"round {r}: {proposer} declared a canary after a vote was revealed")
    if not (books.sealed_in < r and canary.opens_seal(preimage, books.seal)):
        state.disagree(where, f"round {r}: the preimage of {proposer} does not open its seal")
    if not canary.lottery(preimage, state.global_model_hash, r, state.config.canary_rate_bps):
        state.disagree(where, f"round {r}: {proposer} declared a canary its lottery did not draw")
    books.seal, books.sealed_in = canary.seal_bits(preimage), r
    record.canaries.add(proposer)


def _rewarded(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    state.books(event.args["account"]).owed += event.args["amount"]
    state.reward_pool -= event.args["amount"]
    if record is not None:
        record.rewards[event.args["account"]] = event.args["amount"]


def _slashed(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    state.reward_pool += event.args["amount"]
    books = state.books(event.args["account"])
    books.stake -= event.args["amount"]
    if record is not None:
        record.slashes[event.args["account"]] = (event.args["amount"], SlashReason(event.args["reason"]))


def _ejected(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    if record is not None:
        record.ejected.append(event.args["account"])


def _round_finalized(state: Replay, event: Event, where: str, before: tuple[dict[str, int], int]) -> None:
    record = _record(state, event, where)
    if record is None:
        return
    stakes, pool = before
    record.finalized = True
    record.tallies = list(event.args["tallies"])
    record.outcomes = event.args["outcomes"]
    record.decided = event.args["decided"]
    record.round_reward = event.args["roundReward"]
    config = state.config

    def standing(address: str) -> int:
        return state.books(address).standing

    expected = settle(
        RoundInput(
            vote_mode=config.vote_mode,
            stake_weighted=config.stake_weighted,
            slash_rate_bps=config.slash_rate_bps,
            total_rounds=config.total_rounds,
            round=record.round,
            reward_pool=pool,
            voter_reward_bps=config.voter_reward_bps,
            proposers=[
                ProposerSeat(p, stakes.get(p, 0), p in record.updates, standing(p), p in record.canaries)
                for p in record.proposers
            ],
            voters=[
                VoterSeat(
                    v,
                    stakes.get(v, 0),
                    v in record.vote_commitments,
                    v in record.reveals,
                    record.reveals.get(v, 0),
                    standing(v),
                )
                for v in record.voters
            ],
            has_candidate=record.candidate is not None,
            items=record.items,
            quorum=config.quorum,
            min_stake=config.min_stake,
        )
    )
    for address, value in expected.standings.items():
        state.books(address).standing = value
    record.expected = expected
    r = f"round {record.round}"
    if expected.tallies != record.tallies:
        state.disagree(where, f"{r} tallies {record.tallies}, the votes give {expected.tallies}")
    if expected.outcomes != record.outcomes:
        state.disagree(where, f"{r} outcomes {record.outcomes:b}, the tallies give {expected.outcomes:b}")
    if expected.decided != record.decided:
        state.disagree(where, f"{r} decided {record.decided:b}, the quorum gives {expected.decided:b}")
    if expected.ejected != record.ejected:
        state.disagree(where, f"{r} ejected {record.ejected}, the rules eject {expected.ejected}")
    if expected.round_reward != record.round_reward:
        state.disagree(where, f"{r} round reward {record.round_reward}, the pool gives {expected.round_reward}")
    if expected.rewards != record.rewards:
        state.disagree(where, f"{r} rewards {record.rewards} differ from the rules' {expected.rewards}")
    if expected.slashes != record.slashes:
        state.disagree(where, f"{r} slashes {record.slashes} differ from the rules' {expected.slashes}")
    if event.args["paid"] != expected.paid or event.args["slashed"] != expected.slashed:
        state.disagree(where, f"{r} totals paid={event.args['paid']} slashed={event.args['slashed']} do not add up")


def _global_published(state: Replay, event: Event, where: str, _before: object) -> None:
    record = _record(state, event, where)
    published = bytes(event.args["modelHash"])
    if record is not None:
        record.global_model_hash = published
        if state.config.vote_mode is VoteMode.AGGREGATE:
            accepted = record.candidate is not None and record.outcomes & 1
            expected = record.candidate if accepted else state.global_model_hash
            if published != expected:
                state.disagree(
                    where, f"round {record.round} published 0x{published.hex()}, expected 0x{expected.hex()}"
                )
        elif record.outcomes == 0 and published != state.global_model_hash:
            state.disagree(where, f"round {record.round} accepted nothing but changed the global model")
    state.global_model_hash = published


def _action_rejected(state: Replay, event: Event, where: str, _before: object) -> None:
    record = state.rounds.get(event.args["round"])
    if record is not None:
        record.rejected_actions.append(event)


_HANDLERS = {
    "Registered": _registered,
    "StakeChanged": _stake_changed,
    "ExitRequested": _exit_requested,
    "Exited": _exited,
    "PoolFunded": _pool_funded,
    "Withdrawn": _withdrawn,
    "RoundOpened": _round_opened,
    "UpdateCommitted": _update_committed,
    "AggregateProposed": _aggregate_proposed,
    "VoteCommitted": _vote_committed,
    "VoteRevealed": _vote_revealed,
    "CanarySealed": _canary_sealed,
    "CanaryDeclared": _canary_declared,
    "Rewarded": _rewarded,
    "Slashed": _slashed,
    "Ejected": _ejected,
    "RoundFinalized": _round_finalized,
    "GlobalPublished": _global_published,
    "ActionRejected": _action_rejected,
}


def model_hashes(state: Replay) -> dict[bytes, str]:
    """Every blob hash the chain commits to, with what it is (for blob verification)."""
    hashes: dict[bytes, str] = {state.config.initial_model_hash: "initial model"}
    for record in state.rounds.values():
        for proposer, (update_hash, _n) in record.updates.items():
            hashes.setdefault(update_hash, f"round {record.round} update of {proposer}")
        if record.candidate:
            hashes.setdefault(record.candidate, f"round {record.round} candidate")
        if record.global_model_hash:
            hashes.setdefault(record.global_model_hash, f"round {record.round} global model")
    return hashes
