"""Finalization: tallies, outcomes, exact rewards and slashes in both vote modes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.contracts import sortition
from fedledger.contracts import typed_data as td
from fedledger.contracts.bindings import Sent
from fedledger.contracts.canary import CanaryChain
from fedledger.contracts.types import Phase, SlashReason, VoteMode, encode_vote
from fedledger.deploy.chain import dev_accounts, embedded_web3
from tests.conftest import ETH, Harness, make_harness, model_hash


def shape_stakes(h: Harness, accounts: list[str], stakes: list[int]) -> None:
    """Top up every account (registered with 1 ETH) to the given stake."""
    for account, stake in zip(accounts, stakes, strict=True):
        current = h.task.member(account).stake
        if stake > current:
            h.task.add_stake(account, stake - current)


def payouts(sent: Sent) -> tuple[dict[str, int], dict[str, tuple[int, SlashReason]]]:
    rewards = {e.args["account"]: e.args["amount"] for e in sent.named("Rewarded")}
    slashes = {e.args["account"]: (e.args["amount"], SlashReason(e.args["reason"])) for e in sent.named("Slashed")}
    return rewards, slashes


def test_per_update_round_exact_wei(deploy: Any) -> None:
    h: Harness = deploy(total_rounds=3, max_committee=6)
    h.register(6, stake=ETH)
    o = h.open()
    (p0, p1, p2), (v0, v1, v2) = o.proposers, o.voters
    shape_stakes(h, [p0, p1, p2, v0, v1, v2], [2 * ETH, 3 * ETH, 5 * ETH, 2 * ETH, 4 * ETH, 4 * ETH])
    h.commit_update(p0)
    h.commit_update(p1)  # p2 never commits
    h.advance(601)
    h.task.advance_phase(h.coordinator, 1)
    h.commit_vote(v0, 0b01)  # accept p0, reject p1
    h.commit_vote(v1, 0b01)
    h.commit_vote(v2, 0b11)  # commits but never reveals
    h.reveal_vote(v0, 0b01)
    h.reveal_vote(v1, 0b01)
    h.advance(301)
    sent = h.finalize(1)

    final = sent.named("RoundFinalized")[0].args
    round_reward = 100 * ETH // 3  # pool / rounds left = 33333333333333333333
    assert final["tallies"] == [2, -2, 0] and final["outcomes"] == 0b01
    assert final["roundReward"] == round_reward == 33_333_333_333_333_333_333
    rewards, slashes = payouts(sent)
    # good: p0 takes the proposers' 80 %; v0 (2 ETH) and v1 (4 ETH) share the voters' 20 %
    # (33333333333333333333 * 2000 // 10000 = 6666666666666666666)
    assert rewards == {
        p0: 26_666_666_666_666_666_667,
        v0: 2_222_222_222_222_222_222,
        v1: 4_444_444_444_444_444_444,
    }
    assert slashes == {
        p1: (3 * ETH // 10, SlashReason.REJECTED_UPDATE),
        p2: (5 * ETH // 10, SlashReason.MISSING_UPDATE),
        v2: (4 * ETH // 10, SlashReason.UNREVEALED_VOTE),
    }
    assert final["paid"] == 33_333_333_333_333_333_333 and final["slashed"] == 12 * ETH // 10
    assert h.task.reward_pool() == 100 * ETH - 33_333_333_333_333_333_333 + 12 * ETH // 10
    assert h.task.member(p1).stake == 3 * ETH - 3 * ETH // 10
    assert h.task.member(v2).stake == 4 * ETH - 4 * ETH // 10
    assert h.task.member(v1).owed == 4_444_444_444_444_444_444
    assert not h.task.round_info(1).global_published  # the coordinator publishes the accepted aggregate


def test_aggregate_round_accepted_exact_wei(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate", total_rounds=4, max_committee=6, slash_rate_bps=2_500)
    h.register(6, stake=ETH)
    o = h.open()
    (p0, p1, p2), (v0, v1, v2) = o.proposers, o.voters
    shape_stakes(h, [p0, p1, p2, v0, v1, v2], [ETH, ETH, 2 * ETH, 3 * ETH, 2 * ETH, ETH])
    for p in o.proposers:
        h.commit_update(p)
    h.task.propose_aggregate(h.coordinator, 1, model_hash("candidate"))
    for v, bit in ((v0, 1), (v1, 0), (v2, 1)):
        h.commit_vote(v, bit)
    for v, bit in ((v0, 1), (v1, 0), (v2, 1)):
        h.reveal_vote(v, bit)
    sent = h.finalize(1)
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [1] and final["outcomes"] == 1
    rewards, slashes = payouts(sent)
    # pool 100 ETH over 4 rounds: 25 ETH; 20 ETH to p0, p1, p2 (stake 1+1+2), 5 ETH to v0, v2 (stake 3+1)
    assert rewards == {
        p0: 20 * ETH // 4,
        p1: 20 * ETH // 4,
        p2: 20 * ETH * 2 // 4,
        v0: 5 * ETH * 3 // 4,
        v2: 5 * ETH // 4,
    }
    # v1 lost a 2-to-1 verdict: margin 1/3 (3333 bps) of the 25 % slash (slash by evidence)
    assert slashes == {v1: (2 * ETH * 2_500 * 3_333 // 10**8, SlashReason.LOSING_VOTE)}
    assert h.task.global_model_hash() == model_hash("candidate")
    published = sent.named("GlobalPublished")[0].args
    assert published == {"round": 1, "modelHash": model_hash("candidate")}


def test_aggregate_round_rejected_keeps_the_previous_model(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate", total_rounds=2, max_committee=4)
    h.register(4, stake=2 * ETH)
    o = h.open()
    for p in o.proposers:
        h.commit_update(p)
    h.task.propose_aggregate(h.coordinator, 1, model_hash("poisoned"))
    for v in o.voters:
        h.commit_vote(v, 0)
    for v in o.voters:
        h.reveal_vote(v, 0)
    sent = h.finalize(1)
    rewards, slashes = payouts(sent)
    # pool 100 ETH over 2 rounds: the voters' 20 % of 50 ETH to the two voters (equal stakes); the
    # proposers' part has no good seat and stays in the pool
    assert rewards == {o.voters[0]: 5 * ETH, o.voters[1]: 5 * ETH}
    assert h.task.reward_pool() == 90 * ETH + 2 * (2 * ETH // 10)
    assert slashes == {p: (2 * ETH // 10, SlashReason.REJECTED_UPDATE) for p in o.proposers}
    assert h.task.global_model_hash() == h.config.initial_model_hash
    assert h.task.round_info(1).global_published


def test_a_split_vote_gives_no_verdict_and_nobody_is_paid_or_slashed(deploy: Any) -> None:
    """One accept, one reject: no side holds a majority of the reviewers present (a tie accepted before issue 27)."""
    h: Harness = deploy(max_committee=3, proposer_share_bps=3_400)
    h.register(3, stake=ETH)
    o = h.open()
    assert len(o.proposers) == 1 and len(o.voters) == 2
    h.commit_update(o.proposers[0])
    h.commit_vote(o.voters[0], 1)
    h.commit_vote(o.voters[1], 0)
    h.reveal_vote(o.voters[0], 1)
    h.reveal_vote(o.voters[1], 0)
    sent = h.finalize(1)
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [0] and final["outcomes"] == 0 and final["decided"] == 0
    assert payouts(sent) == ({}, {}) and h.task.reward_pool() == 100 * ETH
    assert h.task.round_info(1).global_published  # nothing accepted: the global model stays


def test_stake_weighting_changes_the_outcome(deploy: Any) -> None:
    h: Harness = deploy(stake_weighted=True, max_committee=4, proposer_share_bps=2_500)
    h.register(4, stake=ETH)
    o = h.open()
    (p0,), (v0, v1, v2) = o.proposers, o.voters
    shape_stakes(h, [v2], [3 * ETH])
    h.commit_update(p0)
    for v, bit in ((v0, 1), (v1, 1), (v2, 0)):
        h.commit_vote(v, bit)
    for v, bit in ((v0, 1), (v1, 1), (v2, 0)):
        h.reveal_vote(v, bit)
    sent = h.finalize(1)
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [ETH + ETH - 3 * ETH] and final["outcomes"] == 0  # one-member-one-vote would accept
    rewards, slashes = payouts(sent)
    assert rewards == {v2: 4 * ETH}  # the voters' 20 % of 20 ETH; no proposer was good
    # margin: 1 ETH of the 5 ETH informed (2000 bps) of the 10 % slash
    assert slashes == {
        p0: (ETH // 50, SlashReason.REJECTED_UPDATE),
        v0: (ETH // 50, SlashReason.LOSING_VOTE),
        v1: (ETH // 50, SlashReason.LOSING_VOTE),
    }
    assert h.task.round_info(1).global_published  # nothing accepted: the global model stays, published at once


def test_voter_winning_side_is_the_majority_of_its_bits(deploy: Any) -> None:
    h: Harness = deploy(max_committee=8, proposer_share_bps=5_000)
    h.register(8, stake=ETH)
    o = h.open()
    for p in o.proposers:
        h.commit_update(p)
    # outcomes will be 0b0111 (three voters accept p0-p2, reject p3)
    votes = {o.voters[0]: 0b0111, o.voters[1]: 0b0111, o.voters[2]: 0b0111, o.voters[3]: 0b1001}
    for v, bits in votes.items():
        h.commit_vote(v, bits)
    for v, bits in votes.items():
        h.reveal_vote(v, bits)
    sent = h.finalize(1)
    assert sent.named("RoundFinalized")[0].args["outcomes"] == 0b0111
    _rewards, slashes = payouts(sent)
    # voter 3 agrees on p0 only (1 of 4 bits): losing side; it lost three 3-to-1 verdicts (margin 1/2),
    # and p3 was rejected 3-to-1: each pays half the 10 % slash
    assert slashes == {
        o.proposers[3]: (ETH // 20, SlashReason.REJECTED_UPDATE),
        o.voters[3]: (ETH // 20, SlashReason.LOSING_VOTE),
    }


# ----------------------------------------------------------------- random rounds vs reference


@dataclass
class VoterPlan:
    commits: bool
    reveals: bool
    bits: int


def run_round(
    h: Harness,
    commit_mask: int,
    plans: list[VoterPlan],
    propose: bool,
    canaries: tuple[int, dict[str, CanaryChain]] = (0, {}),
) -> Sent:
    """Play one round as planned, then check it against the reference settlement.

    ``canaries``: the proposers (bit i) that declare their update a canary once the votes are
    committed (the task's rate must make every proposal owe one), and every member's sealed chain.
    """
    o = h.open()
    r = o.round
    committee = o.proposers + o.voters
    before = {a: h.task.member(a) for a in committee}
    pool_before = h.task.reward_pool()
    for i, p in enumerate(o.proposers):
        if commit_mask >> i & 1:
            h.commit_update(p)
    mode = h.config.vote_mode
    if mode is VoteMode.AGGREGATE and propose and commit_mask % (1 << len(o.proposers)):
        h.task.propose_aggregate(h.coordinator, r, model_hash(f"candidate-{r}"))
    if h.phase() is Phase.TRAINING:
        h.advance(h.config.training_duration + 1)
        h.task.advance_phase(h.coordinator, r)
    plans = plans[: len(o.voters)] + [VoterPlan(False, False, 0)] * (len(o.voters) - len(plans))
    items = [
        len(a) for a in sortition.assignment(len(o.proposers), len(o.voters), o.reviewers, mode.label == "aggregate")
    ]

    def vote(plan: VoterPlan, n: int) -> int:  # low 10 bits accept, the next 10 abstain (where not accepted)
        accept = plan.bits % (1 << n)
        return encode_vote(accept, (plan.bits >> 10) % (1 << n) & ~accept)

    if h.phase() is Phase.VOTING:
        for j, (v, plan) in enumerate(zip(o.voters, plans, strict=True)):
            if plan.commits:
                h.commit_vote(v, vote(plan, items[j]))
        if h.phase() is Phase.VOTING:
            h.advance(h.config.voting_duration + 1)
            h.task.advance_phase(h.coordinator, r)
        declaring, chains = canaries
        for i, p in enumerate(o.proposers):
            if declaring >> i & 1 and commit_mask >> i & 1 and mode is VoteMode.PER_UPDATE:
                x = chains[p].preimage
                assert x is not None
                h.task.declare_canary(p, r, x, td.sign_canary(dev_accounts(h.w3)[0], p, r, x, h.task.domain()))
                chains[p].declared()
        for j, (v, plan) in enumerate(zip(o.voters, plans, strict=True)):
            if plan.commits and plan.reveals:
                h.reveal_vote(v, vote(plan, items[j]))
    if h.phase() is Phase.REVEALING:
        h.advance(h.config.reveal_duration + 1)
    sent = h.finalize(r)

    expected = h.reference(r, before, pool_before)
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == expected.tallies
    assert final["outcomes"] == expected.outcomes and final["decided"] == expected.decided
    assert [e.args["account"] for e in sent.named("Ejected")] == expected.ejected
    for a in committee:
        assert h.task.member(a).standing == expected.standings.get(a, before[a].standing)
    assert final["roundReward"] == expected.round_reward
    rewards, slashes = payouts(sent)
    assert rewards == expected.rewards and slashes == expected.slashes
    assert h.task.reward_pool() == pool_before - expected.paid + expected.slashed
    for a in committee:
        after = h.task.member(a)
        assert after.stake == before[a].stake - slashes.get(a, (0, None))[0]
        assert after.owed == before[a].owed + rewards.get(a, 0)
    assert sent.named("ActionRejected") == []
    if mode is VoteMode.PER_UPDATE and not h.task.round_info(r).global_published:
        h.task.publish_global(h.coordinator, r, model_hash(f"global-{r}"))
    return sent


voter_plans = st.lists(
    st.builds(VoterPlan, commits=st.booleans(), reveals=st.booleans(), bits=st.integers(0, 2**20 - 1)),
    min_size=0,
    max_size=9,
)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mode=st.sampled_from(["per_update", "aggregate"]),
    stake_weighted=st.booleans(),
    stakes=st.lists(st.integers(1, 50), min_size=2, max_size=10),
    share=st.integers(1_000, 9_000),
    voter_reward=st.integers(0, 10_000),
    reviewers=st.integers(0, 4),
    quorum=st.integers(1, 4),
    rounds=st.lists(
        st.tuples(st.integers(0, 2**10 - 1), voter_plans, st.booleans(), st.integers(0, 2**10 - 1)),
        min_size=1,
        max_size=2,
    ),
)
def test_random_rounds_match_the_reference(
    mode: str,
    stake_weighted: bool,
    stakes: list[int],
    share: int,
    voter_reward: int,
    reviewers: int,
    quorum: int,
    rounds: list[Any],
) -> None:
    h = make_harness(
        embedded_web3(num_accounts=14),
        vote_mode=mode,
        stake_weighted=stake_weighted,
        proposer_share_bps=share,
        voter_reward_bps=voter_reward,
        reviewers_per_update=reviewers,
        quorum=min(quorum, reviewers or quorum),
        slash_rate_bps=1_500,
        total_rounds=3,
        canary_rate_bps=10_000,
    )
    h.register(len(stakes), stake=[s * ETH // 10 + ETH for s in stakes])
    chains = {a: CanaryChain(keccak(text=a), length=4) for a in h.addresses[: len(stakes)]}
    for a, chain in chains.items():
        h.task.set_canary_seal(a, chain.seal)
    for commit_mask, plans, propose, declaring in rounds:
        if len(h.task.eligible_members()) < 2:
            break
        run_round(h, commit_mask, plans, propose, (declaring, chains))
    assert h.task.balance() == h.stake_sum() + h.task.reward_pool() + h.owed_sum()
