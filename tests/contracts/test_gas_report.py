"""The gas report's claims, in its quick mode: the steady-state targets, and openRound flat in the membership."""

from __future__ import annotations

import pytest

from bench.gas_report import (
    EIP170_LIMIT,
    STEADY_ROUND,
    TARGETS,
    canary_costs,
    code_sizes,
    open_round_by_members,
    scenario,
)
from fedledger.contracts.types import VoteMode


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(VoteMode))
def test_ten_participants_stay_under_the_steady_state_target(mode: VoteMode) -> None:
    first, steady = scenario(10, mode, reviewers=0)
    assert (first["round"], steady["round"]) == (1, STEADY_ROUND)
    assert steady["per_participant_per_round"] <= TARGETS[10], steady
    assert steady["per_participant_per_round"] < first["per_participant_per_round"]  # round 1 pays fresh slots
    # Every round is four transactions: open (or the previous reveal batch), commits, [candidate,] votes, reveals.
    assert steady["reveal_vote_batch_and_finalize"]["entries"] == 5


@pytest.mark.slow
def test_open_round_does_not_grow_with_the_membership() -> None:
    by_members = {o["members"]: o["open_round"] for o in open_round_by_members((32, 256))}
    assert abs(by_members[256] - by_members[32]) < 0.05 * by_members[32]  # one bitmap word either way


def test_every_contract_fits_eip170() -> None:
    assert all(size < EIP170_LIMIT for size in code_sizes().values())


@pytest.mark.slow
def test_a_canary_costs_a_declaration_and_nothing_without_one() -> None:
    costs = canary_costs(10)
    assert costs["per_participant_per_round_without"] <= TARGETS[10], costs  # canaries off: the bar holds
    assert costs["declare_canary"] > 21_000 and costs["set_canary_seal"] > 21_000
    # A canary adds its declaration and a little settlement to its round, nothing more.
    assert abs(costs["round_gas_per_canary"] - costs["declare_canary"]) <= 2_000, costs
    assert costs["per_participant_per_round_at_rate"] > costs["per_participant_per_round_without"]
