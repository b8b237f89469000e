"""The canary rules of ``FLTask`` in Python: the lottery that makes a proposer owe a canary, and its seal.

A lazy voter (one that accepts, or votes at random, without evaluating) agrees with every
verdict of a federation of honest proposers, so nothing but an item whose correct verdict is
known tells it from a voter that looks. Canaries are such items (Truebit's forced errors,
Teutsch and Reitwiessner 2017, adapted to votes):

- Every member holds a hash chain ``x_0 = secret, x_{i+1} = keccak(x_i)`` of ``CANARY_CHAIN``
  links; its *seal* on chain is the last link not yet revealed (first ``x_CANARY_CHAIN``).
- In each round, a proposer whose next preimage ``x`` (``keccak(x) == seal``) wins the lottery
  ``keccak(x, globalModelHash, round) mod 10000 < canaryRateBps`` owes a canary: instead of its
  update it commits a salted copy of the global model (an update that changes nothing), which
  every voter that evaluates rejects ("no change to the global model", client/voting.py). Nobody
  else can tell its item from an update until the proposer declares it.
- Once the reviewers of its item have committed their votes and before any of them reveals, the
  proposer declares it, revealing ``x`` (the seal moves one link down the chain). The global
  model hash of the round is fixed by the coordinator before the round opens, after the member
  chose its chain: the member cannot grind its lottery (issue 29 makes that hash unpredictable to
  the coordinator too).
- Settlement (contracts/settlement.py): a declared canary is never aggregated, paid or slashed;
  where the votes rejected it, each voter that accepted it lost that vote (slashed like a losing
  vote, whatever its other votes); where the votes did not reject it, nobody is judged on it
  (so a member that declares a good update a canary cannot get honest reviewers slashed).
"""

from __future__ import annotations

import functools

from eth_utils import keccak

from .types import BPS, DEFAULT_CANARY_RATE_BPS

__all__ = ["CANARY_CHAIN", "DEFAULT_CANARY_RATE_BPS", "CanaryChain", "lottery", "opens_seal", "seal_bits"]

CANARY_CHAIN = 4096
"""Links of a member's canary hash chain: declarations it can make before it must register anew."""


def lottery(preimage: bytes, global_hash: bytes, round_: int, rate_bps: int) -> bool:
    """Whether the member whose next preimage is ``preimage`` owes a canary in ``round_``."""
    if len(preimage) != 32 or len(global_hash) != 32:
        raise ValueError("the preimage and the global model hash are 32 bytes each")
    draw = int.from_bytes(keccak(preimage + global_hash + round_.to_bytes(32, "big")), "big")
    return draw % BPS < rate_bps


def seal_bits(value: bytes) -> bytes:
    """The part of a seal (a 32-byte word) the contract keeps: its low 224 bits, as 32 bytes."""
    return b"\0" * 4 + value[-28:]


def opens_seal(preimage: bytes, seal: bytes) -> bool:
    """Whether ``preimage`` is the next link of the chain whose current seal is ``seal`` (as the contract checks)."""
    return seal_bits(keccak(preimage)) == seal_bits(seal)


class CanaryChain:
    """A member's canary hash chain, from its secret; ``used`` links revealed so far."""

    def __init__(self, secret: bytes, used: int = 0, length: int = CANARY_CHAIN) -> None:
        """The chain of ``secret`` (32 bytes) with ``used`` links already declared."""
        if len(secret) != 32:
            raise ValueError("a canary secret is 32 bytes")
        if not 0 <= used <= length:
            raise ValueError(f"used must lie in 0..{length}")
        self._secret = secret
        self.length = length
        self.used = used

    @functools.cached_property
    def _links(self) -> list[bytes]:
        """Every link, hashed on first use (4,096 hashes: a member without canaries never pays them)."""
        links = [self._secret]
        for _ in range(self.length):
            links.append(keccak(links[-1]))
        return links

    def link(self, i: int) -> bytes:
        """Link ``i`` (0: the secret)."""
        return self._links[i]

    @property
    def seal(self) -> bytes:
        """The seal on chain now: the last link not yet revealed."""
        return self.link(self.length - self.used)

    @property
    def preimage(self) -> bytes | None:
        """The link the next declaration reveals (None when the chain is spent)."""
        return self.link(self.length - self.used - 1) if self.used < self.length else None

    def owes(self, global_hash: bytes, round_: int, rate_bps: int) -> bytes | None:
        """The preimage to declare when the member owes a canary in ``round_``, else None."""
        if rate_bps == 0:
            return None
        preimage = self.preimage
        if preimage is None:
            return None
        return preimage if lottery(preimage, global_hash, round_, rate_bps) else None

    def declared(self) -> None:
        """Record that the current preimage was revealed."""
        self.used += 1
