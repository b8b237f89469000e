"""The governed aggregate's size bound: FLAME's adaptive clipping, without its noise.

Nguyen et al., "FLAME: Taming Backdoors in Federated Learning", USENIX Security 2022,
arXiv:2101.02281, §4.3: each admitted model's change from the global model is scaled down to at
most the median L2 length of the round's changes, so no update moves the aggregate further than a
typical one does, whatever example count it claims.

Votes decide *which* updates enter a governed round's aggregate; this bounds *how far* each may
move it. On skewed and long-tailed data a voter often has no evidence against a harmful update
and abstains or accepts (docs/voting.md), and an accepted sign flip from a client holding the head
classes was many times the round's median size and collapsed the model (long-tailed digits, 40
members, 20 % sign flips: final accuracy 0.078). The bound is taken over the accepted updates
only, which anyone holding their blobs (the audit) can recompute; attackers moving the median need
the majority of the accepted updates, which already outweigh the honest ones in the mean.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

Arrays = OrderedDict[str, np.ndarray]


def _changed(previous: Arrays, update: Arrays) -> list[str]:
    """The floating arrays of ``update`` that change an array of ``previous`` of the same shape."""
    return [
        k
        for k, v in update.items()
        if k in previous and np.issubdtype(v.dtype, np.floating) and v.shape == previous[k].shape
    ]


def _length(previous: Arrays, update: Arrays, names: list[str]) -> float:
    total = 0.0
    for k in names:
        change = update[k].astype(np.float64) - previous[k].astype(np.float64)
        total += float(np.dot(change.ravel(), change.ravel()))
    return math.sqrt(total)


def change_norm(previous: Arrays, update: Arrays) -> float:
    """The L2 length (float64) of ``update``'s change from ``previous`` over the arrays it changes."""
    return _length(previous, update, _changed(previous, update))


def bound_to_median(previous: Arrays, updates: list[tuple[Arrays, int]]) -> list[tuple[Arrays, int]]:
    """Each update's change scaled down to at most the median change length; the others untouched.

    An update within the bound is returned as it is (the same object, bit for bit); one beyond it
    becomes ``previous + (bound / length) * (update - previous)`` in its own dtype. Example counts
    are kept: the bound limits the length of a change, FedAvg still weighs it by its examples.
    """
    if len(updates) < 2:
        return list(updates)
    changed = [_changed(previous, u) for u, _ in updates]
    lengths = [_length(previous, u, names) for (u, _), names in zip(updates, changed, strict=True)]
    bound = float(np.median(lengths))
    bounded = []
    for (update, examples), length, names in zip(updates, lengths, changed, strict=True):
        if length <= bound:
            bounded.append((update, examples))
            continue
        factor = bound / length
        scaled = OrderedDict(
            (k, (previous[k] + factor * (v - previous[k])).astype(v.dtype) if k in names else v)
            for k, v in update.items()
        )
        bounded.append((scaled, examples))
    return bounded
