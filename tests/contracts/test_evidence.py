"""Evidence-aware votes on chain: abstentions, the quorum, slashes by margin and ejection by standing."""

from __future__ import annotations

from typing import Any

from fedledger.contracts.types import EJECT_STANDING, STANDING_ONE, SlashReason, encode_vote
from tests.conftest import ETH, Harness


def _round(h: Harness, votes: dict[int, int], commit: bool = True) -> Any:
    """Open a round, commit every update, commit and reveal ``votes`` (voter seat -> bits); return the finalization."""
    o = h.open()
    for p in o.proposers:
        h.commit_update(p)
    for j, bits in votes.items():
        h.commit_vote(o.voters[j], bits)
    if len(votes) < len(o.voters):
        h.advance(h.config.voting_duration + 1)
        h.task.advance_phase(h.coordinator, o.round)
    for j, bits in votes.items():
        h.reveal_vote(o.voters[j], bits)
    if h.task.round_info(o.round).phase.name != "FINALIZED":
        h.advance(h.config.reveal_duration + 1)
    return o, h.finalize(o.round)


def test_abstentions_do_not_count_and_an_item_without_quorum_is_neither_paid_nor_slashed(deploy: Any) -> None:
    # Three voters judge one update (quorum 2). Two abstain, one rejects: no verdict.
    h: Harness = deploy(max_committee=4, proposer_share_bps=2_500, quorum=2)
    h.register(4, stake=2 * ETH)
    o, sent = _round(h, {0: encode_vote(0, 1), 1: encode_vote(0, 1), 2: 0})
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [-1] and final["decided"] == 0 and final["outcomes"] == 0
    assert sent.named("Slashed") == [] and sent.named("Rewarded") == []
    assert h.task.member(o.proposers[0]).standing == 0
    assert h.task.round_info(1).global_published  # nothing accepted: the model stays, published at once
    # Quorum met (one accept, one reject) but a split: no side holds a majority of the three present.
    o, sent = _round(h, {0: encode_vote(0, 1), 1: 1, 2: 0})
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [0] and final["decided"] == 0
    assert h.task.round_info(2).global_published
    # Two accepts and an abstention: the accepting side holds 2 of the 3 present, a verdict.
    o, sent = _round(h, {0: encode_vote(0, 1), 1: 1, 2: 1})
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [2] and final["decided"] == 1 and final["outcomes"] == 1


def test_abstentions_do_not_hand_the_verdict_to_a_minority(deploy: Any) -> None:
    """Two colluders reject while three honest reviewers abstain: 2 of 5 present is no majority."""
    h: Harness = deploy(max_committee=6, proposer_share_bps=1_700, quorum=2)
    h.register(6, stake=2 * ETH)
    o, sent = _round(h, {0: 0, 1: 0, 2: encode_vote(0, 1), 3: encode_vote(0, 1), 4: encode_vote(0, 1)})
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [-2] and final["decided"] == 0
    assert sent.named("Slashed") == [] and h.task.member(o.proposers[0]).standing == 0


def test_a_stalled_voting_phase_accepts_nothing_and_slashes_no_proposer(deploy: Any) -> None:
    h: Harness = deploy(max_committee=6, quorum=1)
    h.register(6, stake=2 * ETH)
    o = h.open()
    for p in o.proposers:
        h.commit_update(p)
    h.commit_vote(o.voters[0], 0b111)  # commits, then never reveals; nobody else votes
    h.advance(h.config.voting_duration + 1)
    h.task.advance_phase(h.coordinator, 1)
    h.advance(h.config.reveal_duration + 1)
    sent = h.finalize(1)
    final = sent.named("RoundFinalized")[0].args
    assert final["decided"] == 0 and final["outcomes"] == 0
    slashes = {e.args["account"]: SlashReason(e.args["reason"]) for e in sent.named("Slashed")}
    assert slashes == {o.voters[0]: SlashReason.UNREVEALED_VOTE}  # the withheld reveal, no proposer
    assert h.task.global_model_hash() == h.config.initial_model_hash


def test_a_reveal_must_keep_accept_and_abstain_apart_and_within_its_items(deploy: Any) -> None:
    h: Harness = deploy(max_committee=4, proposer_share_bps=2_500)
    h.register(4, stake=2 * ETH)
    o = h.open()
    h.commit_update(o.proposers[0])
    bad = {o.voters[0]: 1 | 1 << 128, o.voters[1]: 1 << 129}  # accept and abstain on one item; beyond its one item
    for v, bits in bad.items():
        h.commit_vote(v, bits)
    h.advance(h.config.voting_duration + 1)
    h.task.advance_phase(h.coordinator, 1)
    for v, bits in bad.items():
        h.expect_revert(
            "InvalidVoteBits", lambda v=v, bits=bits: h.task.reveal_vote(v, 1, bits, h.salts[(1, v)]), numItems=1
        )


def test_a_narrow_rejection_costs_less_than_a_clear_one(deploy: Any) -> None:
    h: Harness = deploy(max_committee=10, proposer_share_bps=2_000, slash_rate_bps=3_000, total_rounds=3)
    h.register(10, stake=2 * ETH)
    # Two proposers, eight voters: p0 rejected 8-0 (margin 1), p1 rejected 5-3 (margin 1/4).
    o, sent = _round(h, {j: 0b10 if j < 3 else 0 for j in range(8)})
    slashes = {e.args["account"]: e.args["amount"] for e in sent.named("Slashed")}
    assert slashes[o.proposers[0]] == 2 * ETH * 3_000 // 10_000
    assert slashes[o.proposers[1]] == 2 * ETH * 3_000 * 2_500 // 10**8
    # The three voters who accepted p1 lost one close verdict of two: half their votes, not a majority.
    assert set(slashes) == set(o.proposers)


def test_two_rejections_within_three_proposals_eject_and_stake_cannot_buy_back_in(deploy: Any) -> None:
    h: Harness = deploy(max_committee=3, proposer_share_bps=3_400, slash_rate_bps=100, total_rounds=5)
    h.register(3, stake=10 * ETH)
    standings: dict[str, list[int]] = {}
    ejected: list[str] = []
    for r in range(1, 5):
        o, sent = _round(h, {0: 0, 1: 0})  # every update rejected, clearly
        p = o.proposers[0]
        standings.setdefault(p, []).append(h.task.member(p).standing)
        ejected += [e.args["account"] for e in sent.named("Ejected")]
        if not h.task.round_info(r).global_published:
            h.task.publish_global(h.coordinator, r, h.config.initial_model_hash)
        if len(h.task.eligible_members()) < 2:
            break
    # One rejection: standing 1.0 (not out); a second one: 0.5 + 1 = 1.5 >= 1.25, out.
    twice = [p for p, s in standings.items() if len(s) >= 2]
    assert twice and all(
        s[:2] == [STANDING_ONE, STANDING_ONE // 2 + STANDING_ONE] for s in standings.values() if len(s) >= 2
    )
    assert set(twice) <= set(ejected)
    out = twice[0]
    assert out not in h.task.eligible_members() and h.task.member(out).stake > h.config.min_stake
    h.task.add_stake(out, ETH)
    assert out not in h.task.eligible_members()  # the standing, not the stake, keeps it out
    assert h.task.member(out).standing >= EJECT_STANDING


def test_an_accepted_proposal_halves_the_standing(deploy: Any) -> None:
    h: Harness = deploy(max_committee=3, proposer_share_bps=3_400, total_rounds=6)
    h.register(3, stake=2 * ETH)
    seen: dict[str, list[int]] = {}
    for r in range(1, 7):
        reject = r == 1
        o, _sent = _round(h, {0: 0 if reject else 1, 1: 0 if reject else 1})
        p = o.proposers[0]
        seen.setdefault(p, []).append(h.task.member(p).standing)
        if not h.task.round_info(r).global_published:
            h.task.publish_global(h.coordinator, r, h.config.initial_model_hash)
    first = next(s for s in seen.values() if s[0] == STANDING_ONE)
    assert first[1:3] == [STANDING_ONE // 2, STANDING_ONE // 4][: len(first) - 1]
