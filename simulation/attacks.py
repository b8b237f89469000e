"""Attacks a simulated client can mount: poisoned data or a manipulated update.

- ``label_flip``: train on labels mapped c -> C - 1 - c.
- ``scale:FACTOR``: send the global model plus FACTOR times the real update
  (``scale:-10`` flips the update's sign and blows it up; ``scale:0`` is a free rider).
- ``silent``: never answer (a crashed or lazy node); the round goes on after its deadlines.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .tasks import ClientData, Split

ATTACKS = ("label_flip", "scale:FACTOR", "silent")


@dataclass(frozen=True)
class Attack:
    """A parsed ``--attack`` value."""

    kind: str
    factor: float = 1.0

    def __str__(self) -> str:
        return f"scale:{self.factor:g}" if self.kind == "scale" else self.kind

    def poison_data(self, data: ClientData, num_classes: int) -> ClientData:
        """The data the attacker trains on."""
        if self.kind != "label_flip":
            return data
        return ClientData(Split(data.train.x, num_classes - 1 - data.train.y), data.val)

    def poison_update(
        self, global_arrays: OrderedDict[str, np.ndarray], trained: OrderedDict[str, np.ndarray]
    ) -> OrderedDict[str, np.ndarray]:
        """The model the attacker sends instead of ``trained``."""
        if self.kind != "scale":
            return trained
        return OrderedDict(  # over what was trained: an update may carry part of the state (FedSTO's phase 1)
            (name, (global_arrays[name] + self.factor * (t - global_arrays[name])).astype(t.dtype))
            for name, t in trained.items()
        )


def parse_attack(spec: str) -> Attack:
    """Parse ``label_flip`` or ``scale:FACTOR``."""
    if spec in ("label_flip", "silent"):
        return Attack(spec)
    kind, _, value = spec.partition(":")
    if kind == "scale":
        try:
            return Attack("scale", float(value))
        except ValueError as exc:
            raise ValueError(f"scale needs a number, e.g. scale:-10, got {spec!r}") from exc
    raise ValueError(f"unknown attack {spec!r}; use one of {', '.join(ATTACKS)}")


def choose_attackers(num_clients: int, count: int, seed: int) -> list[int]:
    """Which partition ids attack (deterministic for a seed)."""
    if not 0 <= count < num_clients:
        raise ValueError(f"--attackers must be between 0 and {num_clients - 1} for {num_clients} clients")
    return sorted(int(i) for i in np.random.default_rng(seed + 7).choice(num_clients, size=count, replace=False))
