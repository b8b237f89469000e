"""The CPU code paths every fedledger process computes with: one seed, the same bits on any x86-64 machine.

A governed run is chaotic in its floats. Round r+1's committee is drawn from a seed that hashes
round r's global model (``FLTask._openRound``), so a difference in the last bit of one weight
reshuffles every later round: other proposers, other attackers caught, other payouts. torch
(ATen's vectorised kernels), MKL, oneDNN, NumPy and OpenBLAS each pick kernels by the CPU they
find, AVX-512 where present, else AVX2, and those kernels round differently. The same run of
``fedledger simulate`` printed final accuracy 0.9526 on an AVX-512 machine and 0.9331 on an
AVX2-only one with identical packages (docs/decisions.md, "A fresh install gets the verified
run"). An auditor re-aggregating the accepted blobs on another machine must also get the
published global model's bytes.

So every process asks each library for its AVX2 code path, which every x86-64 CPU since 2013-15
has. The variables are set with ``setdefault`` when :mod:`fedledger` is imported, before any of
these libraries computes, and are inherited by every process fedledger starts (Ray workers,
Flower SuperNodes and their ClientApps, the gateway). A user who sets one keeps it. AArch64
machines ignore them: their runs are reproducible among themselves, not with x86-64.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import MutableMapping

PINNED_ENV: dict[str, str] = {
    # ATen's own vectorised kernels (read on first use, so even after `import torch`).
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL's Conditional Numerical Reproducibility: the AVX2 branch on Intel and AMD alike.
    "MKL_CBWR": "AVX2",
    # oneDNN (torch's convolutions and some matmuls): no AVX-512 / AMX kernels.
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # NumPy's dispatched loops: the X86_V3 (AVX2) targets, never the AVX-512 ones (read at import).
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    # OpenBLAS (NumPy's, SciPy's) picks its kernel by CPU model: one for all.
    "OPENBLAS_CORETYPE": "Haswell",
}
"""Environment variables that select each numeric library's AVX2 code path."""


def pin_cpu_paths(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set every :data:`PINNED_ENV` variable the environment does not set yet; return the values in force."""
    for name, value in PINNED_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in PINNED_ENV}


def unpinned(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """The pinned variables a user overrode, with their values (``fedledger doctor`` reports them)."""
    return {name: environ[name] for name, value in PINNED_ENV.items() if environ.get(name, value) != value}


def paths_tag(environ: MutableMapping[str, str] = os.environ) -> str:
    """A short name of the code paths in force, for keys of derived artefacts (``x86_64-avx2`` when pinned)."""
    overridden = unpinned(environ)
    if not overridden:
        return f"{platform.machine()}-avx2"
    digest = hashlib.sha256(json.dumps(overridden, sort_keys=True).encode()).hexdigest()[:10]
    return f"{platform.machine()}-{digest}"
