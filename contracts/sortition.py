"""Reference implementation of the on-chain sortition and reviewer assignment (``Sortition.sol``).

Anyone holding a round's seed and the eligibility bitmap it was drawn from (both in
``RoundOpened``) can recompute its committee with :func:`draw_committee` and which updates each
voter reviews with :func:`items_of` / :func:`reviewers_of`; the audit does exactly that.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from eth_abi import encode
from eth_utils import keccak

from .types import BPS

INDEX_BITS = 10
PER_WORD = 25
"""Member indices per packed committee word (ten bits each, lowest bits first)."""


def round_seed(prevrandao: int, round_: int, global_model_hash: bytes, task: str) -> bytes:
    """``keccak256(abi.encode(block.prevrandao, round, globalModelHash, address(this)))``."""
    return keccak(encode(["uint256", "uint256", "bytes32", "address"], [prevrandao, round_, global_model_hash, task]))


def bitmap_indices(words: Iterable[int]) -> list[int]:
    """The member indices set in an eligibility (or occupancy) bitmap, ascending."""
    return [(w << 8) | bit for w, word in enumerate(words) for bit in range(256) if word >> bit & 1]


def bitmap_words(indices: Iterable[int], words: int) -> list[int]:
    """The bitmap words (``words`` of them) with ``indices`` set."""
    out = [0] * words
    for index in indices:
        if not 0 <= index < 256 * words:
            raise ValueError(f"index {index} does not fit {words} bitmap words")
        out[index >> 8] |= 1 << (index & 255)
    return out


def draw(eligible: Sequence[int], seed: bytes, size: int) -> list[int]:
    """Draw ``size`` distinct member indices from the ascending ``eligible`` indices, as ``Sortition.draw``.

    Draw i takes the r-th (0-based) remaining index, ``r = keccak256(abi.encode(seed, i)) mod`` the
    number left.
    """
    pool = sorted(eligible)
    if not 0 <= size <= len(pool):
        raise ValueError(f"cannot draw {size} of {len(pool)}")
    drawn = []
    for i in range(size):
        r = int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % len(pool)
        drawn.append(pool.pop(r))
    return drawn


def proposer_count(size: int, proposer_share_bps: int) -> int:
    """Proposers in a committee of ``size``: the share, at least one, leaving at least one voter."""
    return min(max(size * proposer_share_bps // BPS, 1), size - 1)


def draw_committee(
    eligible: Sequence[int], seed: bytes, max_committee: int, proposer_share_bps: int
) -> tuple[list[int], int]:
    """The committee (member indices in draw order) and its number of proposers, as ``openRound`` draws them."""
    if len(eligible) < 2:
        raise ValueError("a round needs at least two eligible members")
    size = min(len(eligible), max_committee)
    return draw(eligible, seed, size), proposer_count(size, proposer_share_bps)


def pack(indices: Sequence[int]) -> list[int]:
    """Member indices packed ten bits each, 25 per word (``Sortition.pack``)."""
    words = [0] * ((len(indices) + PER_WORD - 1) // PER_WORD)
    for s, index in enumerate(indices):
        if not 0 <= index < 1 << INDEX_BITS:
            raise ValueError(f"member index {index} does not fit {INDEX_BITS} bits")
        words[s // PER_WORD] |= index << (INDEX_BITS * (s % PER_WORD))
    return words


def unpack(words: Sequence[int], count: int) -> list[int]:
    """The first ``count`` member indices of a packed committee."""
    if count > len(words) * PER_WORD:
        raise ValueError(f"{len(words)} packed words hold at most {len(words) * PER_WORD} seats, not {count}")
    return [(words[s // PER_WORD] >> (INDEX_BITS * (s % PER_WORD))) & ((1 << INDEX_BITS) - 1) for s in range(count)]


def effective_reviewers(k: int, num_proposers: int, num_voters: int) -> int:
    """Reviewers per update in effect: every voter for k = 0 (or k >= V), else at least ceil(V / P)."""
    if k == 0 or k >= num_voters:
        return num_voters
    return max(k, -(-num_voters // num_proposers))


def items_of(seat: int, num_proposers: int, num_voters: int, reviewers: int) -> list[int]:
    """The proposer seats voter ``seat`` reviews, in the bit order of its vote (``FLTask.itemsOf``).

    The P x k review slots are dealt round-robin: slot p (update p // k) goes to voter p mod V.
    """
    if not 0 <= seat < num_voters:
        raise ValueError(f"voter seat {seat} is not below {num_voters}")
    count = (num_proposers * reviewers - seat + num_voters - 1) // num_voters
    return [(seat + a * num_voters) // reviewers for a in range(count)]


def reviewers_of(proposer_seat: int, num_proposers: int, num_voters: int, reviewers: int) -> list[int]:
    """The voter seats that review the update of proposer ``proposer_seat``."""
    if not 0 <= proposer_seat < num_proposers:
        raise ValueError(f"proposer seat {proposer_seat} is not below {num_proposers}")
    return sorted((proposer_seat * reviewers + t) % num_voters for t in range(reviewers))


def assignment(num_proposers: int, num_voters: int, reviewers: int, aggregate: bool = False) -> list[list[int]]:
    """Every voter's items: its assigned proposer seats (per-update) or ``[0]``, the candidate (aggregate)."""
    if aggregate:
        return [[0] for _ in range(num_voters)]
    return [items_of(j, num_proposers, num_voters, reviewers) for j in range(num_voters)]


def majority_odds(members: int, attackers: int, seats: int) -> float:
    """Chance that more than half of ``seats`` drawn without replacement from ``members`` are ``attackers``.

    The hypergeometric tail: the odds that a colluding group of ``attackers`` holds the majority of
    a round's voters (seats = V, drawn from the eligible members) or of one update's reviewers
    (seats = its reviewers, drawn from the members other than its proposer).
    """
    if not 0 <= attackers <= members or not 0 < seats <= members:
        raise ValueError(f"cannot draw {seats} seats from {members} members of which {attackers} attack")
    wins = sum(
        math.comb(attackers, x) * math.comb(members - attackers, seats - x)
        for x in range(seats // 2 + 1, min(seats, attackers) + 1)
    )
    return wins / math.comb(members, seats)
