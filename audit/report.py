"""Audit reports (pydantic, for ``--json``) built from a replay; schema in docs/audit.md."""

from __future__ import annotations

from pydantic import BaseModel

from fedledger.contracts.types import TaskConfig, VoteMode

from .replay import Replay, RoundRecord, model_hashes
from .source import AuditSource, BlobStatus


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


class TaskReport(BaseModel):
    """``audit task``: the immutable parameters a vote is re-run and a payout re-computed with, and the pool left."""

    task: str
    parameters: dict[str, str | int | bool]
    reward_pool: int
    """What is left in the reward pool (wei), from the events."""


def task_report(task: str, config: TaskConfig, state: Replay) -> TaskReport:
    """The task's parameters as the contract's ``config()`` returns them (hashes as hex, labels for enums)."""
    return TaskReport(task=task, parameters=config.model_dump(mode="json"), reward_pool=state.reward_pool)


class RoundSummary(BaseModel):
    """One line of ``audit rounds``."""

    round: int
    finalized: bool
    proposers: list[str]
    voters: list[str]
    candidate: str | None
    updates: int
    reveals: int
    tallies: list[int]
    accepted: list[str]
    round_reward: int
    paid: int
    slashed: int
    global_model_hash: str | None


class Commitment(BaseModel):
    """A proposer's update commitment."""

    proposer: str
    update_hash: str | None
    num_examples: int | None
    accepted: bool | None


class Vote(BaseModel):
    """A voter's commit-reveal record."""

    voter: str
    commitment: str | None
    revealed_bits: int | None
    items: list[int] = []
    """The proposer seats the vote's bits cover, in bit order ([0]: the candidate)."""


class Payout(BaseModel):
    """A reward or a slash."""

    account: str
    amount: int
    reason: str | None = None


class RoundDetail(RoundSummary):
    """``audit round N``: every commitment, vote, reward and slash."""

    seed: str
    commitments: list[Commitment]
    votes: list[Vote]
    rewards: list[Payout]
    slashes: list[Payout]
    rejected_actions: list[str]


class ParticipantEvent(BaseModel):
    """One event in a participant's history."""

    block: int
    event: str
    round: int | None
    amount: int | None
    """Wei it moved: a reward, slash, withdrawal or stake; for StakeChanged the signed change."""
    stake: int | None = None
    """The stake after it, for the events that set the stake (Registered, StakeChanged, Slashed, Exited)."""


STAKE_EVENTS = frozenset({"Registered", "StakeChanged", "Slashed", "Exited"})
"""The events after which a participant's history shows its stake."""


class ParticipantReport(BaseModel):
    """``audit participant ADDR``."""

    address: str
    registered: bool
    exiting: bool
    stake: int
    owed: int
    rounds_as_proposer: list[int]
    rounds_as_voter: list[int]
    total_rewarded: int
    total_slashed: int
    history: list[ParticipantEvent]


class BlobCheck(BaseModel):
    """Re-hash of one committed blob."""

    hash: str
    what: str
    status: str
    detail: str = ""


class VerifyReport(BaseModel):
    """``audit verify``: blobs re-hashed, rounds replayed, and every disagreement."""

    task: str
    events: int
    rounds_checked: int
    blobs: list[BlobCheck]
    blobs_ok: int
    blobs_unreachable: int
    blobs_corrupted: int
    disagreements: list[str]

    @property
    def ok(self) -> bool:
        """True when nothing disagrees."""
        return not self.disagreements


def _accepted(state: Replay, record: RoundRecord) -> list[str]:
    if not record.finalized:
        return []
    if state.config.vote_mode is VoteMode.AGGREGATE:
        return [p for p in record.proposers if p in record.updates and record.outcomes & 1]
    return [p for i, p in enumerate(record.proposers) if record.outcomes >> i & 1]


def round_summary(state: Replay, record: RoundRecord) -> RoundSummary:
    """The one-line view of a round."""
    return RoundSummary(
        round=record.round,
        finalized=record.finalized,
        proposers=record.proposers,
        voters=record.voters,
        candidate=_hex(record.candidate),
        updates=len(record.updates),
        reveals=len(record.reveals),
        tallies=record.tallies,
        accepted=_accepted(state, record),
        round_reward=record.round_reward,
        paid=sum(record.rewards.values()),
        slashed=sum(a for a, _ in record.slashes.values()),
        global_model_hash=_hex(record.global_model_hash),
    )


def round_detail(state: Replay, record: RoundRecord) -> RoundDetail:
    """Everything about one round."""
    accepted = set(_accepted(state, record))
    return RoundDetail(
        **round_summary(state, record).model_dump(),
        seed="0x" + record.seed.hex(),
        commitments=[
            Commitment(
                proposer=p,
                update_hash=_hex(record.updates[p][0]) if p in record.updates else None,
                num_examples=record.updates[p][1] if p in record.updates else None,
                accepted=(p in accepted) if record.finalized and p in record.updates else None,
            )
            for p in record.proposers
        ],
        votes=[
            Vote(
                voter=v,
                commitment=_hex(record.vote_commitments.get(v)),
                revealed_bits=record.reveals.get(v),
                items=record.items[j] if j < len(record.items) else [],
            )
            for j, v in enumerate(record.voters)
        ],
        rewards=[Payout(account=a, amount=n) for a, n in record.rewards.items()],
        slashes=[Payout(account=a, amount=n, reason=r.name.lower()) for a, (n, r) in record.slashes.items()],
        rejected_actions=[
            f"{e.args['signer']} action {e.args['action']} at block {e.block_number}" for e in record.rejected_actions
        ],
    )


def participant_report(state: Replay, address: str) -> ParticipantReport:
    """History and balances of one participant."""
    books = state.books(address)
    rewarded = slashed = 0
    stake: int | None = None
    history = []
    for e in books.history:
        amount = e.args.get("amount", e.args.get("stake"))
        if e.name == "Rewarded":
            rewarded += amount
        elif e.name == "Slashed":
            slashed += amount
            stake = None if stake is None else stake - amount
        elif e.name == "StakeChanged":
            amount, stake = e.args["newStake"] - e.args["oldStake"], e.args["newStake"]
        elif e.name in ("Registered", "Exited"):
            stake = amount if e.name == "Registered" else 0
        after = stake if e.name in STAKE_EVENTS else None
        history.append(
            ParticipantEvent(block=e.block_number, event=e.name, round=e.args.get("round"), amount=amount, stake=after)
        )
    return ParticipantReport(
        address=address,
        registered=books.registered,
        exiting=books.exiting,
        stake=books.stake,
        owed=books.owed,
        rounds_as_proposer=[r.round for r in state.rounds.values() if address in r.proposers],
        rounds_as_voter=[r.round for r in state.rounds.values() if address in r.voters],
        total_rewarded=rewarded,
        total_slashed=slashed,
        history=history,
    )


def verify(state: Replay, source: AuditSource, events: int) -> VerifyReport:
    """Re-hash every committed blob, and compare the replayed books with the contract's views."""
    disagreements = list(state.disagreements)
    checks = []
    for blob_hash, what in model_hashes(state).items():
        status, detail = source.check_blob(blob_hash)
        checks.append(BlobCheck(hash="0x" + blob_hash.hex(), what=what, status=status.value, detail=detail))
        if status is BlobStatus.CORRUPTED:
            disagreements.append(f"blob 0x{blob_hash.hex()} ({what}) does not match its on-chain hash: {detail}")
    for address, books in state.members.items():
        view = source.member(address)
        if (view.stake, view.owed) != (books.stake, books.owed):
            disagreements.append(
                f"{address}: contract says stake {view.stake} owed {view.owed}, "
                f"the events give stake {books.stake} owed {books.owed}"
            )
    disagreements.extend(_check_published_models(state, source))
    pool = source.reward_pool()
    if pool != state.reward_pool:
        disagreements.append(f"reward pool: contract says {pool}, the events give {state.reward_pool}")
    return VerifyReport(
        task=source.task_address,
        events=events,
        rounds_checked=sum(1 for r in state.rounds.values() if r.finalized),
        blobs=checks,
        blobs_ok=sum(c.status == BlobStatus.OK.value for c in checks),
        blobs_unreachable=sum(c.status == BlobStatus.UNREACHABLE.value for c in checks),
        blobs_corrupted=sum(c.status == BlobStatus.CORRUPTED.value for c in checks),
        disagreements=disagreements,
    )


def _check_published_models(state: Replay, source: AuditSource) -> list[str]:
    """Per-update rounds: recompute the aggregate of the accepted updates and compare its hash."""
    from fedledger import codec
    from fedledger.aggregation.registry import get_strategy
    from fedledger.server.gateway.blobstore import keccak256

    if state.config.vote_mode is not VoteMode.PER_UPDATE:
        return []
    try:
        plugin = get_strategy(state.config.strategy)
    except ValueError:
        return []  # a strategy this installation does not know: nothing to recompute with
    found = []
    previous_hash = state.config.initial_model_hash
    for record in sorted(state.rounds.values(), key=lambda rec: rec.round):
        started_from, previous_hash = previous_hash, record.global_model_hash or previous_hash
        accepted = [p for p in _accepted(state, record) if p in record.updates]
        if not accepted or record.global_model_hash is None:
            continue
        previous = None
        if plugin.aggregates_from_previous or plugin.bounded_aggregate:
            blob = source.fetch_blob(started_from)
            if blob is None:
                continue  # the state the round started from is unreachable: nothing to recompute from
            previous = codec.decode(blob)
        updates = []
        for proposer in sorted(accepted):
            blob = source.fetch_blob(record.updates[proposer][0])
            if blob is None:
                break  # an accepted update is unreachable: cannot recompute (counted as unreachable above)
            try:
                updates.append((codec.decode(blob), record.updates[proposer][1]))
            except codec.CodecError as exc:
                found.append(f"round {record.round}: accepted update of {proposer} is not a model encoding: {exc}")
                break
        else:
            if previous is not None:
                aggregate = plugin.governed_aggregate_offline(previous, updates)
            else:
                aggregate = plugin.aggregate_offline(previous, updates)
            if aggregate is not None and keccak256(codec.encode(aggregate)) != record.global_model_hash:
                found.append(
                    f"round {record.round}: published global model 0x{record.global_model_hash.hex()} is not "
                    f"the {plugin.name} aggregate of its accepted updates"
                )
    return found
