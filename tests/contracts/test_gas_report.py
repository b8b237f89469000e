"""The gas report's claims, in its quick mode: the steady-state targets, and openRound flat in the membership."""

from __future__ import annotations

import pytest

from bench.gas_report import EIP170_LIMIT, STEADY_ROUND, TARGETS, code_sizes, open_round_by_members, scenario
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
