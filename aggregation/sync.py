"""Sparse sync of a global state: send only the entries that changed since what a node holds.

A payload holds, for each array with changes, ``NAME.mask`` (the changed positions of the
flattened array, bit-packed) and ``NAME.values`` (their new values, same dtype). Patching the
node's copy rebuilds the new state exactly (values are copied, not added), so the node can
check it against the hash the chain records.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

Arrays = OrderedDict[str, np.ndarray]
MASK, VALUES = ".mask", ".values"


class SyncError(ValueError):
    """A payload that does not fit the state it is applied to."""


def diff(known: Arrays, current: Arrays) -> Arrays:
    """The payload that turns ``known`` into ``current`` (same names, shapes and dtypes)."""
    if list(known) != list(current):
        raise SyncError(f"cannot diff states with different arrays: {list(known)} vs {list(current)}")
    payload: Arrays = OrderedDict()
    for name, new in current.items():
        old = known[name]
        if old.shape != new.shape or old.dtype != new.dtype:
            raise SyncError(f"array {name!r} changed shape or dtype")
        changed = (old != new).ravel()
        if changed.any():
            payload[name + MASK] = np.packbits(changed)
            payload[name + VALUES] = np.ascontiguousarray(new.ravel()[changed])
    return payload


def patch(known: Arrays, payload: Arrays) -> Arrays:
    """``known`` with the payload's changes (a new state; ``known`` is untouched)."""
    names = {key[: -len(MASK)] for key in payload if key.endswith(MASK)}
    values = {key[: -len(VALUES)] for key in payload if key.endswith(VALUES)}
    if names != values or len(payload) != 2 * len(names):
        raise SyncError("a sync payload needs one .mask and one .values entry per changed array")
    unknown = names - set(known)
    if unknown:
        raise SyncError(f"sync payload names arrays this state does not have: {sorted(unknown)}")
    state: Arrays = OrderedDict()
    for name, old in known.items():
        if name not in names:
            state[name] = old
            continue
        mask = np.unpackbits(payload[name + MASK], count=old.size).astype(bool)
        new_values = payload[name + VALUES]
        if new_values.dtype != old.dtype or new_values.shape != (int(mask.sum()),):
            shape, dtype = new_values.shape, new_values.dtype
            raise SyncError(f"array {name!r}: {shape} {dtype} values for {int(mask.sum())} changes")
        flat = old.ravel().copy()
        flat[mask] = new_values
        state[name] = flat.reshape(old.shape)
    return state
