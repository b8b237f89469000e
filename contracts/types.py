"""Python mirrors of the Solidity types of ``IFLTask`` (enums and structs)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Self

from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

BPS = 10_000
MAX_COMMITTEE = 120
"""``FLTask.MAX_COMMITTEE``: a round's vote masks (120 bits each) share one storage slot."""
MAX_MEMBERS = 1024
"""``FLTask.MAX_MEMBERS``: members at a time (member indices 0-1023)."""
UINT96_MAX = 2**96 - 1
"""Stakes and balances are 96-bit in a member's storage word."""
ABSTAIN_SHIFT = 128
"""A revealed vote is ``accept | abstain << ABSTAIN_SHIFT``: bit a of each mask speaks of the voter's a-th item."""
STANDING_ONE = 256
"""A member's standing is fixed-point in 1/256: one rejected proposal adds ``STANDING_ONE``."""
EJECT_STANDING = 320
"""Standing at or above 1.25 ejects: two rejections within three proposals (docs/incentives.md)."""
STANDING_MAX = 2**16 - 1
"""Standing is 16 bits of the member word; it saturates."""


DEFAULT_CANARY_RATE_BPS = 0
"""Chance that a proposal owes a canary (contracts/canary.py), unless the task says otherwise: off, for what
canaries cost in accuracy on skewed data and in gas (docs/voting.md, "Canaries")."""
CANARY_STUDY_RATE_BPS = 3_000
"""The canary rate at which the study measured lazy voters losing (docs/voting.md, "Canaries")."""

DEFAULT_QUORUM = 2
"""Informed votes an item needs for a verdict, unless the task says otherwise (docs/voting.md)."""


def quorum_bound(max_committee: int, reviewers_per_update: int) -> int:
    """The largest quorum: the reviewers an update can have in a committee of ``max_committee`` (k, 0: all)."""
    return min(reviewers_per_update or max_committee, max_committee - 1)


def default_quorum(max_committee: int, reviewers_per_update: int) -> int:
    """The default quorum, lowered to the reviewers an update can have in a committee of ``max_committee``."""
    return max(1, min(DEFAULT_QUORUM, quorum_bound(max_committee, reviewers_per_update)))


def encode_vote(accept: int, abstain: int = 0) -> int:
    """The ``bits`` a voter reveals: its accept mask and its abstain mask over its items (disjoint)."""
    if accept & abstain:
        raise ValueError("an item cannot be both accepted and abstained on")
    return accept | abstain << ABSTAIN_SHIFT


def decode_vote(bits: int) -> tuple[int, int]:
    """(accept mask, abstain mask) of revealed ``bits``."""
    return bits & ((1 << ABSTAIN_SHIFT) - 1), bits >> ABSTAIN_SHIFT


def vote_letters(bits: int, items: int) -> str:
    """A revealed vote per item in bit order: A accept, R reject, . abstain (e.g. ``A.R``)."""
    accept, abstain = decode_vote(bits)
    return "".join("." if abstain >> a & 1 else "A" if accept >> a & 1 else "R" for a in range(items))


def vote_problem(bits: int, items: int) -> str:
    """Why ``bits`` is not a vote on ``items`` items, as ``FLTask`` refuses it (``InvalidVoteBits``); "" if it is."""
    accept, abstain = decode_vote(bits)
    if accept >> items or abstain >> items:
        return f"bits {bits:#x} speak of items beyond the {items} this voter judges"
    if accept & abstain:
        return f"bits {bits:#x} both accept and abstain on one item"
    return ""


class VoteMode(IntEnum):
    """What voters judge: each proposer's update, or the aggregated candidate (the paper)."""

    PER_UPDATE = 0
    AGGREGATE = 1

    @classmethod
    def parse(cls, value: str | int | VoteMode) -> VoteMode:
        """Accept ``per_update`` / ``aggregate`` (any case, ``-`` or ``_``), an int or a member."""
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "_")
            if key not in cls.__members__:
                raise ValueError(f"unknown vote mode {value!r}; use per_update or aggregate")
            return cls[key]
        return cls(value)

    @property
    def label(self) -> str:
        """The lower-case name used on the command line and in reports."""
        return self.name.lower()


class Phase(IntEnum):
    """Life cycle of a round."""

    NONE = 0
    TRAINING = 1
    VOTING = 2
    REVEALING = 3
    FINALIZED = 4


class Role(IntEnum):
    """Role of an account in a round."""

    NONE = 0
    PROPOSER = 1
    VOTER = 2


class Action(IntEnum):
    """Kind of a relayed action, as reported by ``ActionRejected``."""

    COMMIT_UPDATE = 0
    COMMIT_VOTE = 1
    REVEAL_VOTE = 2
    REQUEST_EXIT = 3
    COMPLETE_EXIT = 4
    WITHDRAW = 5


class SlashReason(IntEnum):
    """Why a participant was slashed."""

    REJECTED_UPDATE = 0
    MISSING_UPDATE = 1
    LOSING_VOTE = 2
    UNREVEALED_VOTE = 3


def strategy_to_bytes32(name: str, what: str = "strategy name") -> bytes:
    """Encode a name (a strategy's, a vote rule's) as right-padded ASCII ``bytes32``."""
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raw = b""
    if not raw or len(raw) > 32 or b"\0" in raw:
        raise ValueError(f"{what} must be 1-32 ASCII characters, got {name!r}")
    return raw.ljust(32, b"\0")


def bytes32_to_strategy(raw: bytes) -> str:
    """Decode a right-padded ASCII ``bytes32`` name."""
    return bytes(raw).rstrip(b"\0").decode("ascii")


def _as_bytes32(value: Any) -> bytes:
    if isinstance(value, str):
        text = value.removeprefix("0x")
        value = bytes.fromhex(text)
    value = bytes(value)
    if len(value) != 32:
        raise ValueError(f"expected 32 bytes, got {len(value)}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_tuple(cls, values: Any) -> Self:
        """Build from the positional tuple web3 returns for a Solidity struct."""
        return cls(**dict(zip(cls.model_fields, values, strict=True)))


class TaskConfig(_Model):
    """Immutable parameters of an ``FLTask`` (field order = the Solidity struct).

    Validation mirrors the contract's constructor, so bad input is reported before any
    transaction is sent.
    """

    config_hash: bytes = Field(default=b"\0" * 32, description="hash of the off-chain task description")
    initial_model_hash: bytes = Field(description="keccak256 of the initial global model's canonical bytes")
    strategy: str = Field(default="fedavg", description="aggregation strategy name")
    total_rounds: int = Field(default=5, ge=1, le=2**32 - 1)
    min_stake: int = Field(default=10**18, ge=1, le=UINT96_MAX, description="wei")
    proposer_share_bps: int = Field(default=5_000, ge=1, le=BPS - 1)
    max_committee: int = Field(default=10, ge=2, le=MAX_COMMITTEE)
    slash_rate_bps: int = Field(default=2_000, ge=0, le=BPS)
    vote_tolerance_bps: int = Field(default=500, ge=0, le=BPS - 1)
    vote_rule: str = Field(default="reference", description="how voters judge updates (client/voting.py)")
    voter_reward_bps: int = Field(default=1_000, ge=0, le=BPS, description="the good voters' share of a round reward")
    vote_mode: VoteMode = VoteMode.PER_UPDATE
    stake_weighted: bool = False
    reviewers_per_update: int = Field(
        default=10,
        ge=0,
        le=MAX_COMMITTEE - 1,
        description=(
            "voters assigned to each update (per-update mode); 0: every voter judges every update. Default 10: "
            "all voters up to 10, and as good as all of them at 20 voters (docs/voting.md, 'Reviewers per update')"
        ),
    )
    quorum: int = Field(
        default=DEFAULT_QUORUM,
        ge=1,
        le=MAX_COMMITTEE - 1,
        description=(
            "informed (accepting or rejecting, not abstaining) votes an item needs for a verdict; without them it "
            "is neither paid nor slashed and stays out of the model (docs/voting.md, 'Abstain and quorum')"
        ),
    )
    canary_rate_bps: int = Field(
        default=DEFAULT_CANARY_RATE_BPS,
        ge=0,
        le=BPS,
        description="chance that a proposal owes a canary, bps (per-update mode; docs/voting.md, 'Canaries')",
    )
    training_duration: int = Field(default=600, ge=1, le=2**64 - 1, description="seconds")
    voting_duration: int = Field(default=300, ge=1, le=2**64 - 1, description="seconds")
    reveal_duration: int = Field(default=300, ge=1, le=2**64 - 1, description="seconds")
    exit_delay: int = Field(default=3_600, ge=0, le=2**32 - 1, description="seconds")
    coordinator: str = Field(description="address of the coordinator")

    @model_validator(mode="before")
    @classmethod
    def _default_quorum(cls, data: Any) -> Any:
        """Without a quorum given, the default, lowered to what a small committee can give an update."""
        if isinstance(data, dict) and data.get("quorum") is None:
            fields = cls.model_fields
            committee = data.get("max_committee", fields["max_committee"].default)
            k = data.get("reviewers_per_update", fields["reviewers_per_update"].default)
            if isinstance(committee, int) and isinstance(k, int) and committee >= 2:
                data = {**data, "quorum": default_quorum(committee, k)}
        return data

    @model_validator(mode="after")
    def _quorum_fits(self) -> Self:
        reviewers = quorum_bound(self.max_committee, self.reviewers_per_update)
        if self.quorum > reviewers:
            raise ValueError(
                f"quorum {self.quorum} is larger than the {reviewers} reviewers an update can have "
                "(reviewers_per_update, at most max_committee - 1)"
            )
        return self

    @field_validator("config_hash", "initial_model_hash", mode="before")
    @classmethod
    def _hash32(cls, value: Any) -> bytes:
        return _as_bytes32(value)

    @field_validator("initial_model_hash")
    @classmethod
    def _nonzero(cls, value: bytes) -> bytes:
        if value == b"\0" * 32:
            raise ValueError("initial_model_hash must not be zero")
        return value

    @field_validator("strategy", "vote_rule", mode="before")
    @classmethod
    def _name32(cls, value: Any) -> str:
        if isinstance(value, bytes | bytearray):
            value = bytes32_to_strategy(value)
        strategy_to_bytes32(value, "a strategy or vote rule name")
        return str(value)

    @field_validator("vote_mode", mode="before")
    @classmethod
    def _vote_mode(cls, value: Any) -> VoteMode:
        return VoteMode.parse(value)

    @field_validator("coordinator", mode="before")
    @classmethod
    def _address(cls, value: Any) -> str:
        address = to_checksum_address(value)
        if int(address, 16) == 0:
            raise ValueError("coordinator must not be the zero address")
        return address

    @field_serializer("config_hash", "initial_model_hash", when_used="json")
    def _hex(self, value: bytes) -> str:
        return "0x" + value.hex()

    @field_serializer("vote_mode", when_used="json")
    def _mode_label(self, value: VoteMode) -> str:
        return value.label

    def to_tuple(self) -> tuple[Any, ...]:
        """The positional tuple the contract ABI expects."""
        values = self.model_dump()
        values["strategy"] = strategy_to_bytes32(self.strategy)
        values["vote_rule"] = strategy_to_bytes32(self.vote_rule)
        values["vote_mode"] = int(self.vote_mode)
        return tuple(values[name] for name in type(self).model_fields)


class RoundInfo(_Model):
    """Public state of the current round (``FLTask.getRound``); earlier rounds live in the events."""

    round: int
    phase: Phase
    deadline: int
    num_proposers: int
    num_voters: int
    reviewers: int
    num_updates: int
    num_vote_commits: int
    num_reveals: int
    global_published: bool
    committed_mask: int
    vote_committed_mask: int
    revealed_mask: int
    candidate: bytes
    vote_digest: bytes


class MemberInfo(_Model):
    """A member's stake, exit state, credited balance, signature nonce and member index."""

    registered: bool
    exiting: bool
    exit_ready_at: int
    stake: int
    owed: int
    nonce: int
    index: int
    standing: int = 0
    """Fixed-point (1/256) record of rejected proposals and losing votes; ejects at ``EJECT_STANDING``."""


class RoundOpened(_Model):
    """A round's draw as ``RoundOpened`` announced it, with the drawn accounts resolved.

    ``committee`` are the drawn member indices in draw order (proposers first); ``eligible`` the
    eligibility bitmap words the draw was made from; ``reviewers`` the reviewers per update in
    effect (see :func:`fedledger.contracts.sortition.items_of`).
    """

    round: int
    seed: bytes
    committee: list[int]
    eligible: list[int]
    reviewers: int
    deadline: int
    proposers: list[str]
    voters: list[str]

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        if set(self.proposers) & set(self.voters):
            raise ValueError("an account cannot be proposer and voter in one round")
        if len(self.committee) != len(self.proposers) + len(self.voters):
            raise ValueError("the committee and the drawn accounts differ in number")
        return self


def vote_commitment(task: str, round_: int, candidate: bytes, bits: int, salt: bytes, voter: str) -> bytes:
    """Compute the commitment a voter commits, exactly as ``FLTask.voteCommitment``.

    ``keccak256(abi.encode(task, round, candidate, bits, salt, voter))``; ``candidate`` is
    32 zero bytes in per-update mode.
    """
    from eth_abi import encode  # local: eth_abi is heavy to import and only needed here

    encoded = encode(
        ["address", "uint256", "bytes32", "uint256", "bytes32", "address"],
        [task, round_, _as_bytes32(candidate), bits, _as_bytes32(salt), voter],
    )
    return keccak(encoded)
