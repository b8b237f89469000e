"""Reference implementation of the on-chain sortition (``Sortition.sol``), for audits and tests.

Anyone holding a round's seed and the eligible list at the time it opened can recompute its
proposers and voters with :func:`draw_committee` and compare them with ``RoundOpened``.
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from .types import BPS


def round_seed(prevrandao: int, round_: int, global_model_hash: bytes, task: str) -> bytes:
    """``keccak256(abi.encode(block.prevrandao, round, globalModelHash, address(this)))``."""
    return keccak(encode(["uint256", "uint256", "bytes32", "address"], [prevrandao, round_, global_model_hash, task]))


def draw(eligible: list[str], seed: bytes, size: int) -> list[str]:
    """Partial Fisher-Yates shuffle driven by ``keccak256(abi.encode(seed, i))``; first ``size`` accounts."""
    if not 0 <= size <= len(eligible):
        raise ValueError(f"cannot draw {size} of {len(eligible)}")
    pool = [to_checksum_address(a) for a in eligible]
    n = len(pool)
    for i in range(size):
        j = i + int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, i])), "big") % (n - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:size]


def proposer_count(size: int, proposer_share_bps: int) -> int:
    """Proposers in a committee of ``size``: the share, at least one, leaving at least one voter."""
    return min(max(size * proposer_share_bps // BPS, 1), size - 1)


def draw_committee(
    eligible: list[str], seed: bytes, max_committee: int, proposer_share_bps: int
) -> tuple[list[str], list[str]]:
    """Proposers and voters exactly as ``FLTask.previewSortition`` draws them."""
    if len(eligible) < 2:
        raise ValueError("a round needs at least two eligible members")
    size = min(len(eligible), max_committee)
    drawn = draw(eligible, seed, size)
    k = proposer_count(size, proposer_share_bps)
    return drawn[:k], drawn[k:]
