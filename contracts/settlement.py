"""Reference implementation of round settlement (``FLTask._finalize``), for audits and tests.

Given who committed and how everyone voted, :func:`settle` returns the tallies, outcomes,
rewards and slashes the contract must produce. ``fedledger audit verify`` replays rounds with
it from events; the contract tests compare the chain against it.

Rules (DESIGN §3, arXiv:2307.00543): a revealed vote adds +w (bit set) or -w to each judged
item it covers, w = 1 or the voter's stake; an item is accepted when its tally >= 0. Per update,
voter j's bit a covers update ``items[j][a]`` (its reviewer assignment, see
:func:`fedledger.contracts.sortition.items_of`; every update when k = 0); in aggregate mode bit 0
covers the candidate. A voter is on the winning side when at least half of its judged items agree
with the outcomes (a tie agrees with both). The round reward
``pool // rounds_left`` is split: ``voter_reward_bps`` of it among the good voters, the rest among
the good proposers, each part in proportion to stake; bad seats lose ``stake * slash_rate_bps // 10000``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import BPS, SlashReason, VoteMode


@dataclass(frozen=True)
class ProposerSeat:
    """A proposer of the round: stake at finalization and whether it committed an update."""

    address: str
    stake: int
    committed: bool


@dataclass(frozen=True)
class VoterSeat:
    """A voter of the round: stake at finalization and its commit-reveal state."""

    address: str
    stake: int
    committed: bool
    revealed: bool = False
    bits: int = 0


@dataclass(frozen=True)
class RoundInput:
    """Everything settlement depends on."""

    vote_mode: VoteMode
    stake_weighted: bool
    slash_rate_bps: int
    total_rounds: int
    round: int
    reward_pool: int
    voter_reward_bps: int
    proposers: list[ProposerSeat]
    voters: list[VoterSeat]
    has_candidate: bool = False
    items: list[list[int]] | None = None
    """Per voter, the items its bits cover in bit order; None: every voter covers every item."""

    def voter_items(self, j: int) -> list[int]:
        """The items voter ``j``'s bit a covers, in bit order."""
        if self.vote_mode is VoteMode.AGGREGATE:
            return [0]
        if self.items is None:
            return list(range(len(self.proposers)))
        return self.items[j]


@dataclass
class Settlement:
    """What the contract must emit and credit for a round."""

    tallies: list[int]
    outcomes: int
    round_reward: int
    rewards: dict[str, int] = field(default_factory=dict)
    slashes: dict[str, tuple[int, SlashReason]] = field(default_factory=dict)

    @property
    def paid(self) -> int:
        """Total credited to good seats."""
        return sum(self.rewards.values())

    @property
    def slashed(self) -> int:
        """Total taken from bad seats."""
        return sum(amount for amount, _ in self.slashes.values())


def judged_mask(inp: RoundInput) -> int:
    """Bits of the items voters judge: committed proposers, or bit 0 for an existing candidate."""
    if inp.vote_mode is VoteMode.PER_UPDATE:
        return sum(1 << i for i, p in enumerate(inp.proposers) if p.committed)
    return 1 if inp.has_candidate else 0


def settle(inp: RoundInput) -> Settlement:
    """Settle a round exactly as the contract does."""
    per_update = inp.vote_mode is VoteMode.PER_UPDATE
    num_items = len(inp.proposers) if per_update else 1
    judged = judged_mask(inp)
    tallies = [0] * num_items
    for j, voter in enumerate(inp.voters):
        if not voter.revealed:
            continue
        weight = voter.stake if inp.stake_weighted else 1
        for a, item in enumerate(inp.voter_items(j)):
            if judged >> item & 1:
                tallies[item] += weight if voter.bits >> a & 1 else -weight
    outcomes = sum(1 << i for i in range(num_items) if judged >> i & 1 and tallies[i] >= 0)
    ties = sum(1 << i for i in range(num_items) if judged >> i & 1 and tallies[i] == 0)

    good_proposers: list[tuple[str, int]] = []
    good_voters: list[tuple[str, int]] = []
    bad: list[tuple[str, int, SlashReason]] = []
    for i, p in enumerate(inp.proposers):
        if not p.committed:
            bad.append((p.address, p.stake, SlashReason.MISSING_UPDATE))
        elif judged:
            if outcomes >> (i if per_update else 0) & 1:
                good_proposers.append((p.address, p.stake))
            else:
                bad.append((p.address, p.stake, SlashReason.REJECTED_UPDATE))
    for j, v in enumerate(inp.voters):
        if not v.committed:
            continue
        if not v.revealed:
            bad.append((v.address, v.stake, SlashReason.UNREVEALED_VOTE))
            continue
        covered = [(a, item) for a, item in enumerate(inp.voter_items(j)) if judged >> item & 1]
        if not covered:
            continue  # nothing it judged was on chain: neither paid nor slashed
        agree = sum(1 for a, item in covered if ties >> item & 1 or (v.bits >> a & 1) == (outcomes >> item & 1))
        if 2 * agree >= len(covered):
            good_voters.append((v.address, v.stake))
        else:
            bad.append((v.address, v.stake, SlashReason.LOSING_VOTE))

    round_reward = inp.reward_pool // (inp.total_rounds - inp.round + 1)
    result = Settlement(tallies=tallies, outcomes=outcomes, round_reward=round_reward)
    voter_part = round_reward * inp.voter_reward_bps // BPS
    for part, good in ((round_reward - voter_part, good_proposers), (voter_part, good_voters)):
        good_stake = sum(stake for _, stake in good)
        for address, stake in good:
            result.rewards[address] = part * stake // good_stake
    for address, stake, reason in bad:
        result.slashes[address] = (stake * inp.slash_rate_bps // BPS, reason)
    return result
