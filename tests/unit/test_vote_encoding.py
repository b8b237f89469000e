"""The revealed vote's encoding: accept | abstain << 128, checked as the contract checks it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedledger.contracts.types import ABSTAIN_SHIFT, decode_vote, encode_vote, vote_letters, vote_problem


@given(st.integers(1, 119).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, 2**n - 1), st.integers(0, 2**n - 1))))
def test_a_vote_round_trips_and_is_valid_exactly_when_its_masks_are_disjoint(case: tuple[int, int, int]) -> None:
    n, accept, abstain = case
    abstain &= ~accept
    bits = encode_vote(accept, abstain)
    assert decode_vote(bits) == (accept, abstain) and vote_problem(bits, n) == ""
    letters = vote_letters(bits, n)
    assert (
        len(letters) == n
        and letters.count("A") == bin(accept).count("1")
        and letters.count(".") == bin(abstain).count("1")
    )
    if abstain:  # the same item accepted and abstained on: refused
        low = abstain & -abstain
        assert "both accept and abstain" in vote_problem(bits | low, n)
    assert "beyond" in vote_problem(bits | 1 << n, n) and "beyond" in vote_problem(bits | 1 << (ABSTAIN_SHIFT + n), n)


def test_encoding_refuses_overlapping_masks() -> None:
    with pytest.raises(ValueError, match="both accepted and abstained"):
        encode_vote(0b11, 0b10)
    assert vote_letters(encode_vote(0b001, 0b100), 3) == "AR."
