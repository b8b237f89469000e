"""Split a labelled pool over clients: ``iid`` or ``dirichlet:ALPHA`` (per-class Dirichlet proportions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import AfterValidator


@dataclass(frozen=True)
class Partitioning:
    """A parsed ``--partition`` value."""

    kind: str
    alpha: float | None = None

    def __str__(self) -> str:
        return self.kind if self.alpha is None else f"{self.kind}:{self.alpha:g}"


def parse_partitioning(spec: str) -> Partitioning:
    """Parse ``iid`` or ``dirichlet:ALPHA`` (ALPHA > 0)."""
    if spec == "iid":
        return Partitioning("iid")
    kind, _, value = spec.partition(":")
    if kind == "dirichlet":
        try:
            alpha = float(value)
        except ValueError as exc:
            raise ValueError(f"dirichlet needs a number: dirichlet:0.5, got {spec!r}") from exc
        if not alpha > 0:
            raise ValueError(f"the Dirichlet alpha must be positive, got {alpha}")
        return Partitioning("dirichlet", alpha)
    raise ValueError(f"unknown partitioning {spec!r}; use iid or dirichlet:ALPHA")


def _checked(value: str) -> str:
    parse_partitioning(value)
    return value


PartitionSpec = Annotated[str, AfterValidator(_checked)]
"""A ``--partition`` value in a pydantic model (validated, kept as text)."""


def partition(labels: np.ndarray, num_partitions: int, how: Partitioning, seed: int) -> list[np.ndarray]:
    """Indices of each partition; deterministic for a seed; every index used once."""
    if num_partitions < 1:
        raise ValueError("need at least one partition")
    rng = np.random.default_rng(seed)
    if how.kind == "iid":
        return [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), num_partitions)]
    assert how.alpha is not None
    parts: list[list[int]] = [[] for _ in range(num_partitions)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(num_partitions, how.alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for client, chunk in enumerate(np.split(members, cuts)):
            parts[client].extend(chunk.tolist())
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
