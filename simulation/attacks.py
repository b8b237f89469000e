"""Attacks a simulated client can mount, on its updates (``--attack``) and on its votes (``--voter-attack``).

Update attacks (DESIGN §7):

- ``none``: no update attack (a client that only attacks with its votes).
- ``label_flip``: train on labels mapped c -> C - 1 - c.
- ``scale:FACTOR``: send the global model plus FACTOR times the real update.
- ``sign_flip``: ``scale:-1``, the update pointed the other way.
- ``noise:SIGMA``: the trained model plus Gaussian noise of standard deviation SIGMA on every value.
- ``free_ride``: send the global model back (no work, yet hoping to be paid).
- ``alie``: "A Little Is Enough" (Baruch, Baruch, Goldberg, NeurIPS 2019, arXiv:1902.06156):
  every attacker sends mean - z * std, per coordinate, of the honest updates of all attackers,
  with z from the number of clients n and attackers m: s = floor(n / 2 + 1) - m,
  z = Phi^-1((n - s) / n).
- ``silent``: never answer (a crashed or lazy node); the round goes on after its deadlines.

Voter attacks, applied to the voter's honest judgement of a round's items:

- ``honest``: vote the honest judgement.
- ``random``: a fair coin per judged item.
- ``invert``: the opposite of the honest judgement on every judged item.
- ``accept_all``: accept every judged item without looking (a lazy voter).
- ``no_reveal``: commit the honest judgement, never reveal it.
- ``collude``: accept every attacker's update, reject every honest one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Annotated

import numpy as np
from pydantic import AfterValidator

from fedledger.contracts.types import decode_vote, encode_vote

from .tasks import ClientData, Split

Arrays = OrderedDict[str, np.ndarray]

UPDATE_ATTACKS = ("none", "label_flip", "scale:FACTOR", "sign_flip", "noise:SIGMA", "free_ride", "alie", "silent")
VOTER_ATTACKS = ("honest", "random", "invert", "accept_all", "no_reveal", "collude")
_PLAIN = frozenset({"none", "label_flip", "sign_flip", "free_ride", "alie", "silent"})


def alie_z(num_clients: int, num_attackers: int) -> float:
    """The z of "A Little Is Enough" (arXiv:1902.06156, §3): the largest shift the honest majority hides.

    ``s = floor(n / 2 + 1) - m`` honest workers must look at least as far off as the attackers;
    ``z = Phi^-1((n - s) / n)``. Attackers that are a majority already (s < 1) use s = 1.
    """
    if not 0 < num_attackers < num_clients:
        raise ValueError(f"ALIE needs 0 < attackers < clients, got {num_attackers} of {num_clients}")
    s = max(math.floor(num_clients / 2 + 1) - num_attackers, 1)
    return NormalDist().inv_cdf((num_clients - s) / num_clients)


def alie_update(honest_updates: Sequence[Arrays], z: float) -> Arrays:
    """Mean - z * std per coordinate over ``honest_updates`` (population std, as the paper's estimate)."""
    if not honest_updates:
        raise ValueError("ALIE needs the attackers' honest updates")
    first = honest_updates[0]
    result: Arrays = OrderedDict()
    for name, value in first.items():
        if not np.issubdtype(value.dtype, np.floating):
            result[name] = value  # counters and indices travel unchanged
            continue
        stack = np.stack([u[name] for u in honest_updates]).astype(np.float64)
        result[name] = (stack.mean(axis=0) - z * stack.std(axis=0)).astype(value.dtype)
    return result


@dataclass(frozen=True)
class PoisonContext:
    """What an update attack may need beyond the global state and the attacker's own update.

    ``rng`` drives random attacks (noise), seeded per run, round and client. ``attacker_updates``
    returns the honest updates of every attacker of the run this round, for ALIE's estimate;
    ``num_clients`` and ``num_attackers`` give ALIE's z.
    """

    rng: np.random.Generator
    attacker_updates: Callable[[], list[Arrays]] | None = None
    num_clients: int = 0
    num_attackers: int = 0


@dataclass(frozen=True)
class Attack:
    """A parsed ``--attack`` value."""

    kind: str
    value: float = 0.0
    """The factor of ``scale`` or the standard deviation of ``noise``."""

    def __str__(self) -> str:
        if self.kind == "scale":
            return f"scale:{self.value:g}"
        if self.kind == "noise":
            return f"noise:{self.value:g}"
        return self.kind

    @property
    def factor(self) -> float | None:
        """The scale this attack applies to the real update, when it is a scaling (sign_flip -1, free_ride 0)."""
        return {"scale": self.value, "sign_flip": -1.0, "free_ride": 0.0}.get(self.kind)

    @property
    def silent(self) -> bool:
        """The attacker never answers."""
        return self.kind == "silent"

    def poison_data(self, data: ClientData, num_classes: int) -> ClientData:
        """The data the attacker trains on (only its training split; it judges with its real data)."""
        if self.kind != "label_flip":
            return data
        return ClientData(Split(data.train.x, num_classes - 1 - data.train.y), data.val, data.test)

    def poison_update(self, global_arrays: Arrays, trained: Arrays, context: PoisonContext | None = None) -> Arrays:
        """The update the attacker sends instead of ``trained`` (over the arrays ``trained`` carries)."""
        factor = self.factor
        if factor is not None:
            return OrderedDict(
                (name, (global_arrays[name] + factor * (t - global_arrays[name])).astype(t.dtype))
                if np.issubdtype(t.dtype, np.floating)
                else (name, t)
                for name, t in trained.items()
            )
        if self.kind == "noise":
            if context is None:
                raise ValueError("the noise attack needs a random generator")
            return OrderedDict(
                (name, (t + context.rng.normal(0.0, self.value, t.shape)).astype(t.dtype))
                if np.issubdtype(t.dtype, np.floating)
                else (name, t)
                for name, t in trained.items()
            )
        if self.kind == "alie":
            if context is None or context.attacker_updates is None:
                raise ValueError("ALIE needs the attackers' honest updates")
            return alie_update(context.attacker_updates(), alie_z(context.num_clients, context.num_attackers))
        return trained


def parse_attack(spec: str) -> Attack:
    """Parse an ``--attack`` value; a ValueError names the accepted values."""
    spec = spec.strip()
    if spec in _PLAIN:
        return Attack(spec)
    kind, sep, value = spec.partition(":")
    if sep and kind in ("scale", "noise"):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            example = "scale:-10" if kind == "scale" else "noise:0.5"
            raise ValueError(f"{kind} needs a number, e.g. {example}, got {spec!r}")
        if kind == "noise" and number <= 0:
            raise ValueError(f"noise needs a positive standard deviation, e.g. noise:0.5, got {spec!r}")
        return Attack(kind, number)
    raise ValueError(f"unknown attack {spec!r}; use one of {', '.join(UPDATE_ATTACKS)}")


@dataclass(frozen=True)
class VoterAttack:
    """A parsed ``--voter-attack`` value: how a voter turns its honest judgement into the bits it commits."""

    kind: str = "honest"

    def __str__(self) -> str:
        return self.kind

    @property
    def reveals(self) -> bool:
        """Whether the voter reveals what it committed."""
        return self.kind != "no_reveal"

    def bits(self, honest: int, judged: int, attacker_items: int, rng: np.random.Generator) -> int:
        """The bits to commit.

        ``honest`` is the honest judgement, ``judged`` the items there are to judge,
        ``attacker_items`` those proposed by fellow attackers (all three bitmaps over the round's items).
        """
        accept, abstain = decode_vote(honest)
        if self.kind in ("honest", "no_reveal"):
            return encode_vote(accept & judged & ~abstain, abstain & judged)
        if self.kind == "random":
            coins = rng.integers(0, 2, size=max(judged.bit_length(), 1))
            return sum(1 << i for i, coin in enumerate(coins) if coin) & judged
        if self.kind == "invert":  # turns every informed vote around, keeps its abstentions
            return encode_vote(~accept & judged & ~abstain, abstain & judged)
        if self.kind == "accept_all":
            return judged
        if self.kind == "collude":
            return attacker_items & judged
        raise AssertionError(self.kind)


def parse_voter_attack(spec: str) -> VoterAttack:
    """Parse a ``--voter-attack`` value; a ValueError names the accepted values."""
    spec = spec.strip()
    if spec not in VOTER_ATTACKS:
        raise ValueError(f"unknown voter attack {spec!r}; use one of {', '.join(VOTER_ATTACKS)}")
    return VoterAttack(spec)


def _checked_attack(value: str) -> str:
    if value:  # "" = no attack given
        parse_attack(value)
    return value


def _checked_voter_attack(value: str) -> str:
    parse_voter_attack(value)
    return value


AttackSpec = Annotated[str, AfterValidator(_checked_attack)]
"""An ``--attack`` value in a pydantic model (validated, kept as text)."""
VoterAttackSpec = Annotated[str, AfterValidator(_checked_voter_attack)]
"""A ``--voter-attack`` value in a pydantic model."""


def choose_attackers(num_clients: int, count: int, seed: int) -> list[int]:
    """Which partition ids attack (deterministic for a seed)."""
    if not 0 <= count < num_clients:
        raise ValueError(f"--attackers must be between 0 and {num_clients - 1} for {num_clients} clients")
    return sorted(int(i) for i in np.random.default_rng(seed + 7).choice(num_clients, size=count, replace=False))
