"""Reference implementation of round settlement (``FLTask._finalize``), for audits and tests.

Given who committed and how everyone voted, :func:`settle` returns the tallies, verdicts,
rewards, slashes and standings the contract must produce. ``fedledger audit verify`` replays
rounds with it from events; the contract tests compare the chain against it.

Rules (DESIGN §3, docs/protocol.md "Settlement"):

- A revealed vote is ``accept | abstain << 128`` over the voter's items (bit a covers its a-th
  item: its reviewer assignment, see :func:`fedledger.contracts.sortition.items_of`, every
  update when k = 0; in aggregate mode bit 0 is the candidate). An abstention is no vote.
- Each judged item's tally sums +w (accept) / -w (reject) over its informed reviewers, w = 1 or
  the voter's stake. With at least ``quorum`` informed reviewers the item is *accepted* when its
  tally is positive, *rejected* when its rejections hold more than half of the weight of all its
  revealed reviewers, abstaining or not (abstentions never let a minority reject, and slash, an
  update); otherwise, and without a quorum, it is *undecided* (a stalled phase, reviewers without
  evidence, a tie): neither paid nor slashed, and it stays out of the model.
- The verdict's margin is |tally| / (the informed weight), in bps: 10000 is unanimous.
- Proposers: a missing update is slashed the full rate; a rejected one ``rate x margin`` (slash
  by evidence); an accepted one is paid. Each decided or missing proposal halves the member's
  standing, a rejected or missing one then adds one (``STANDING_ONE``).
- Voters: a committed vote never revealed is slashed the full rate. A revealed vote is judged
  on its informed votes of decided items: good when at least half agree with the verdicts, else
  bad, slashed ``rate x`` the mean margin of the verdicts it lost, which also adds half that
  margin to its standing (a losing vote on a close verdict costs less than one on a clear
  verdict). A voter with no informed vote on a decided item is neither paid nor slashed.
- Canaries (per-update mode, contracts/canary.py): a declared canary is never accepted; its
  proposer is paid as for an accepted update, never slashed, and keeps its standing. Where its
  votes rejected it, it stays decided and every voter that accepted it did not evaluate (the
  verdict is proven): it forfeits its whole stake and is ejected, whatever its other votes.
  Otherwise it is undecided: nobody is judged on it.
- A member whose standing reaches ``EJECT_STANDING`` is ejected (never drawn again), as is one
  whose stake falls below the minimum.
- The round reward ``pool // rounds_left`` is split: ``voter_reward_bps`` of it among the good
  voters, the rest among the good proposers, each part in proportion to stake.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import BPS, EJECT_STANDING, STANDING_MAX, STANDING_ONE, SlashReason, VoteMode, decode_vote


@dataclass(frozen=True)
class ProposerSeat:
    """A proposer of the round: stake and standing at finalization and whether it committed an update."""

    address: str
    stake: int
    committed: bool
    standing: int = 0
    canary: bool = False
    """Its item is a declared canary (per-update mode)."""


@dataclass(frozen=True)
class VoterSeat:
    """A voter of the round: stake and standing at finalization and its commit-reveal state."""

    address: str
    stake: int
    committed: bool
    revealed: bool = False
    bits: int = 0
    standing: int = 0


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
    quorum: int = 1
    min_stake: int = 0

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
    decided: int = 0
    """Bit i: item i had a quorum of informed reviewers (``outcomes`` is a subset)."""
    rewards: dict[str, int] = field(default_factory=dict)
    slashes: dict[str, tuple[int, SlashReason]] = field(default_factory=dict)
    standings: dict[str, int] = field(default_factory=dict)
    """The new standing of every seat whose standing changed."""
    ejected: list[str] = field(default_factory=list)
    """Seats this round made ineligible (standing or stake), in seat order."""

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


def canary_mask(inp: RoundInput) -> int:
    """Bits of the items that are declared canaries (committed proposers' items, per-update mode)."""
    if inp.vote_mode is not VoteMode.PER_UPDATE:
        return 0
    return sum(1 << i for i, p in enumerate(inp.proposers) if p.committed and p.canary)


def _informed(inp: RoundInput, j: int, judged: int) -> list[tuple[int, int, bool]]:
    """Voter ``j``'s informed votes on judged items: (bit, item, accepts)."""
    accept, abstain = decode_vote(inp.voters[j].bits)
    return [
        (a, item, bool(accept >> a & 1))
        for a, item in enumerate(inp.voter_items(j))
        if judged >> item & 1 and not abstain >> a & 1
    ]


def _proposal(standing: int, rejected: bool) -> int:
    return min((standing >> 1) + (STANDING_ONE if rejected else 0), STANDING_MAX)


def settle(inp: RoundInput) -> Settlement:
    """Settle a round exactly as the contract does."""
    per_update = inp.vote_mode is VoteMode.PER_UPDATE
    num_items = len(inp.proposers) if per_update else 1
    judged = judged_mask(inp)
    tallies = [0] * num_items
    informed = [0] * num_items  # informed reviewers per item
    weight = [0] * num_items  # their total weight
    present = [0] * num_items  # the weight of every revealed reviewer of the item, abstaining or not
    yes = [0] * num_items
    votes: list[list[tuple[int, int, bool]]] = []
    for j, voter in enumerate(inp.voters):
        votes.append(_informed(inp, j, judged) if voter.revealed else [])
        w = voter.stake if inp.stake_weighted else 1
        if voter.revealed:
            for item in inp.voter_items(j):
                if judged >> item & 1:
                    present[item] += w
        for _a, item, accepts in votes[j]:
            tallies[item] += w if accepts else -w
            yes[item] += w if accepts else 0
            informed[item] += 1
            weight[item] += w
    # A verdict needs a quorum of informed reviewers; acceptance a majority of the informed, rejection
    # more than half of all the revealed reviewers' weight, abstaining or not: abstentions never let
    # a minority reject (and slash) an update.
    accepted = [yes[i] > weight[i] - yes[i] for i in range(num_items)]
    rejected = [2 * (weight[i] - yes[i]) > present[i] for i in range(num_items)]
    verdict = [informed[i] >= inp.quorum and (accepted[i] or rejected[i]) for i in range(num_items)]
    canaries = canary_mask(inp)
    # A canary the votes did not reject judges nobody.
    proven = [not canaries >> i & 1 or rejected[i] for i in range(num_items)]
    decided = sum(1 << i for i in range(num_items) if judged >> i & 1 and verdict[i] and proven[i])
    outcomes = sum(1 << i for i in range(num_items) if decided >> i & 1 and accepted[i])
    margin = [abs(tallies[i]) * BPS // weight[i] if weight[i] else 0 for i in range(num_items)]

    round_reward = inp.reward_pool // (inp.total_rounds - inp.round + 1)
    result = Settlement(tallies=tallies, outcomes=outcomes, decided=decided, round_reward=round_reward)
    good_proposers: list[tuple[str, int]] = []
    good_voters: list[tuple[str, int]] = []
    stakes: dict[str, int] = {}
    for i, p in enumerate(inp.proposers):
        item = i if per_update else 0
        if canaries >> i & 1:
            good_proposers.append((p.address, p.stake))  # its duty done: paid, never slashed, standing unchanged
            continue
        if not p.committed:
            amount, rejected = p.stake * inp.slash_rate_bps // BPS, True
            result.slashes[p.address] = (amount, SlashReason.MISSING_UPDATE)
        elif judged and decided >> item & 1:
            rejected = not outcomes >> item & 1
            if rejected:
                amount = p.stake * inp.slash_rate_bps * margin[item] // (BPS * BPS)
                result.slashes[p.address] = (amount, SlashReason.REJECTED_UPDATE)
            else:
                good_proposers.append((p.address, p.stake))
        else:
            continue  # nothing judged, or no quorum: neither paid nor slashed, standing unchanged
        result.standings[p.address] = _proposal(p.standing, rejected)
        stakes[p.address] = p.stake - result.slashes.get(p.address, (0, None))[0]
    for j, v in enumerate(inp.voters):
        if not v.committed:
            continue
        if not v.revealed:
            amount = v.stake * inp.slash_rate_bps // BPS
            result.slashes[v.address] = (amount, SlashReason.UNREVEALED_VOTE)
            stakes[v.address] = v.stake - amount
            continue
        covered = [(item, accepts) for _a, item, accepts in votes[j] if decided >> item & 1]
        if not covered:
            continue  # no informed vote on a decided item: neither paid nor slashed
        lost = [item for item, accepts in covered if accepts != bool(outcomes >> item & 1)]
        fooled = any(canaries >> item & 1 for item in lost)  # accepted a canary its reviewers rejected
        if not fooled and 2 * (len(covered) - len(lost)) >= len(covered):
            good_voters.append((v.address, v.stake))
            continue
        mean_margin = sum(margin[item] for item in lost) // len(lost)
        amount = v.stake if fooled else v.stake * inp.slash_rate_bps * mean_margin // (BPS * BPS)
        result.slashes[v.address] = (amount, SlashReason.LOSING_VOTE)
        stakes[v.address] = v.stake - amount
        added = EJECT_STANDING if fooled else STANDING_ONE * mean_margin // (2 * BPS)
        result.standings[v.address] = min(v.standing + added, STANDING_MAX)

    voter_part = round_reward * inp.voter_reward_bps // BPS
    for part, good in ((round_reward - voter_part, good_proposers), (voter_part, good_voters)):
        good_stake = sum(stake for _, stake in good)
        for address, stake in good:
            result.rewards[address] = part * stake // good_stake
    for seat in [*inp.proposers, *inp.voters]:  # drawn seats were eligible; only a slash ejects
        standing = result.standings.get(seat.address, seat.standing)
        if seat.address in result.slashes and (standing >= EJECT_STANDING or stakes[seat.address] < inp.min_stake):
            result.ejected.append(seat.address)
    return result
