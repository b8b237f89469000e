"""A member's side of canaries (rules: contracts/canary.py): its chain secret and the canary it commits."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from fedledger.contracts.canary import CanaryChain

Arrays = OrderedDict[str, np.ndarray]

CANARY_NOISE = 1e-7
"""Size of the salted noise on each weight of a canary: far below any update's (voters see no change)."""


def canary_chain(key: LocalAccount, task: str, used: int = 0) -> CanaryChain:
    """The canary chain of ``key`` in the task at address ``task``: its secret derives from the key.

    Nothing more to keep safe than the key, and a chain per task, so that the links revealed in
    one task tell nothing of the lottery in another.
    """
    secret = keccak(bytes(key.key) + bytes.fromhex(task.removeprefix("0x").rjust(40, "0")) + b"fedledger canary")
    return CanaryChain(secret, used)


def canary_update(state: Arrays, preimage: bytes) -> Arrays:
    """A salted copy of the global ``state``: an update that changes nothing, whose bytes no one can predict."""
    rng = np.random.default_rng(int.from_bytes(keccak(preimage + b"salt")[:8], "big"))
    out: Arrays = OrderedDict()
    for name, value in state.items():
        if np.issubdtype(value.dtype, np.floating):
            out[name] = (value + rng.normal(0.0, CANARY_NOISE, value.shape)).astype(value.dtype)
        else:
            out[name] = value.copy()
    return out
