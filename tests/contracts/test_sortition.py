"""Sortition and reviewer assignment: deterministic, duplicate-free, balanced, limited to eligible members."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.contracts import sortition
from tests.conftest import ETH, Harness


def _accounts(h: Harness, indices: list[int]) -> list[str]:
    return [h.task.member_at(i) or "" for i in indices]


def test_open_round_draws_what_the_reference_draws(h: Harness) -> None:
    members = h.register(8)
    opened = h.open()
    # eth-tester executes transactions with prevrandao 0 and fills the block's mixHash in later,
    # so the seed here mixes in 0 (the anvil test checks the mixHash path).
    seed = sortition.round_seed(0, 1, h.config.initial_model_hash, h.task.address)
    assert opened.seed == seed
    assert opened.eligible == sortition.bitmap_words(range(8), 1)
    drawn, num_proposers = sortition.draw_committee(list(range(8)), seed, 10, 5_000)
    assert opened.committee == drawn and num_proposers == len(opened.proposers) == 4
    assert opened.proposers + opened.voters == _accounts(h, drawn)
    assert set(opened.proposers + opened.voters) == set(members)
    assert (opened.proposers, opened.voters) == h.task.preview_sortition(seed)


def test_same_seed_same_committee_other_seed_other_committee(h: Harness) -> None:
    h.register(12)
    first = h.task.preview_sortition(keccak(text="seed-a"))
    assert h.task.preview_sortition(keccak(text="seed-a")) == first
    others = {tuple(h.task.preview_sortition(keccak(text=f"seed-{i}"))[0]) for i in range(8)}
    assert len(others) > 1


def test_committee_respects_max_size_and_share(deploy: Any) -> None:
    h: Harness = deploy(max_committee=5, proposer_share_bps=3_000)
    members = h.register(12)
    proposers, voters = h.task.preview_sortition(keccak(text="s"))
    drawn = proposers + voters
    assert len(drawn) == 5 and len(set(drawn)) == 5 and set(drawn) <= set(members)
    assert len(proposers) == 1  # 5 * 30% = 1.5 -> 1


def test_under_staked_and_exiting_members_are_not_drawn(deploy: Any) -> None:
    h: Harness = deploy(max_committee=20, slash_rate_bps=6_000)
    members = h.register(6, stake=[ETH, 2 * ETH, 2 * ETH, 2 * ETH, 2 * ETH, 2 * ETH])
    h.task.request_exit(members[1])
    assert h.task.eligible_members() == [members[0], *members[2:]]
    # A member slashed below the minimum stake drops out of the eligible set.
    opened = h.open()
    assert members[1] not in opened.proposers + opened.voters
    h.advance(601)
    h.task.advance_phase(h.coordinator, 1)  # no commitments: voting is skipped
    h.task.finalize_round(h.coordinator, 1)  # every proposer is slashed 60% for a missing update
    for proposer in opened.proposers:
        assert h.task.member(proposer).stake < ETH
    eligible = set(h.task.eligible_members())
    assert eligible == set(members) - {members[1]} - set(opened.proposers)
    opened2 = h.open()
    assert set(opened2.proposers + opened2.voters) <= eligible
    assert sortition.bitmap_indices(opened2.eligible) == sorted(h.task.member(a).index for a in eligible)


@settings(max_examples=60, deadline=None)
@given(
    eligible=st.sets(st.integers(0, 1023), min_size=2, max_size=300),
    max_committee=st.integers(min_value=2, max_value=120),
    share=st.integers(min_value=1, max_value=9_999),
    seed=st.binary(min_size=32, max_size=32),
)
def test_reference_draw_properties(eligible: set[int], max_committee: int, share: int, seed: bytes) -> None:
    indices = sorted(eligible)
    drawn, num_proposers = sortition.draw_committee(indices, seed, max_committee, share)
    assert len(drawn) == min(len(indices), max_committee) == len(set(drawn)) and set(drawn) <= eligible
    assert 1 <= num_proposers < len(drawn)
    assert sortition.draw_committee(indices, seed, max_committee, share) == (drawn, num_proposers)
    assert sortition.unpack(sortition.pack(drawn), len(drawn)) == drawn
    assert sortition.bitmap_indices(sortition.bitmap_words(indices, 4)) == indices


@settings(max_examples=80, deadline=None)
@given(
    proposers=st.integers(1, 119),
    voters=st.integers(1, 119),
    k=st.integers(0, 119),
)
def test_reviewer_assignment_is_balanced_and_distinct(proposers: int, voters: int, k: int) -> None:
    reviewers = sortition.effective_reviewers(k, proposers, voters)
    assert reviewers == voters if k == 0 or k >= voters else max(k, -(-voters // proposers)) <= voters
    items = [sortition.items_of(j, proposers, voters, reviewers) for j in range(voters)]
    loads = [len(i) for i in items]
    # every voter has work, and no voter more than ceil(P k / V)
    assert min(loads) >= 1 and max(loads) == -(-proposers * reviewers // voters) and min(loads) >= max(loads) - 1
    for i in range(proposers):
        judges = sortition.reviewers_of(i, proposers, voters, reviewers)
        assert len(judges) == len(set(judges)) == reviewers
        assert judges == sorted(j for j in range(voters) if i in items[j])
    for own in items:
        assert own == sorted(set(own))  # distinct updates, in ascending bit order


@settings(max_examples=60, deadline=None)
@given(members=st.integers(1, 12), data=st.data())
def test_majority_odds_is_the_share_of_draws_with_an_attacker_majority(members: int, data: st.DataObject) -> None:
    """The hypergeometric tail against an enumeration of every draw (the study's expected rates)."""
    attackers = data.draw(st.integers(0, members))
    seats = data.draw(st.integers(1, members))
    draws = list(itertools.combinations(range(members), seats))
    wins = sum(1 for d in draws if 2 * sum(1 for m in d if m < attackers) > seats)
    assert sortition.majority_odds(members, attackers, seats) == pytest.approx(wins / len(draws))


def test_majority_odds_refuses_an_impossible_draw() -> None:
    for members, attackers, seats in ((5, 6, 3), (5, 2, 0), (5, 2, 6)):
        with pytest.raises(ValueError, match="cannot draw"):
            sortition.majority_odds(members, attackers, seats)
    # 30 % attackers: 5 reviewers leave a majority in one draw of 6, 21 of 70 in under one in a hundred
    assert sortition.majority_odds(100, 30, 5) > 0.15
    assert sortition.majority_odds(70, 21, 21) < 0.01


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.binary(min_size=32, max_size=32), gone=st.sets(st.integers(0, 19), max_size=8))
def test_contract_matches_reference_for_random_seeds_and_holes(deploy: Any, seed: bytes, gone: set[int]) -> None:
    h: Harness = deploy(exit_delay=0)
    members = h.register(20)
    for i in gone:  # exits leave holes in the eligibility bitmap
        h.task.request_exit(members[i])
    eligible = sortition.bitmap_indices(h.task.eligibility())
    assert eligible == sorted(set(range(20)) - gone)
    if len(eligible) < 2:
        return
    drawn, num_proposers = sortition.draw_committee(eligible, seed, 10, 5_000)
    accounts = _accounts(h, drawn)
    assert h.task.preview_sortition(seed) == (accounts[:num_proposers], accounts[num_proposers:])


def test_contract_items_match_the_reference(deploy: Any) -> None:
    h: Harness = deploy(max_committee=11, reviewers_per_update=3)
    h.register(11)
    opened = h.open()
    p, v = len(opened.proposers), len(opened.voters)
    assert opened.reviewers == sortition.effective_reviewers(3, p, v) == 3
    for j in range(v):
        assert h.task.items_of(j) == sortition.items_of(j, p, v, 3)
    assert h.task.items_of(v) == []
