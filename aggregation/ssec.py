"""SSE-C: FedLoGe's frozen sparse simplex-ETF classifier (arXiv:2401.08977, Section 4.1).

As the reference ``ETF_Classifier.gen_sparse_ETF`` builds it: P (d x K, orthonormal columns, QR
of a uniform random matrix), M = sqrt(K / (K - 1)) * P (I - 11^T / K), floor(beta * d * K)
random entries set to zero, then the non-zero entries tuned by Adam (lr 1e-4, 10,000 steps,
gradients masked so the zeros stay zero) on sum_c (||m_c|| - 0.1)^2 - mean_c arccos(max_{c' != c}
cos(m_c, m_c')). Everything is drawn from one seed, so every party rebuilds the same matrix.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

NORM_TARGET = 0.1
STEPS = 10_000
LR = 1e-4


def simplex_etf(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A d x K simplex equiangular tight frame: unit columns, pairwise cosine -1/(K-1) (float64)."""
    if d < k:
        raise ValueError(f"an ETF of {k} classes needs at least {k} feature dimensions, got {d}")
    p, _ = np.linalg.qr(rng.random((d, k)))
    return np.sqrt(k / (k - 1)) * p @ (np.eye(k) - np.ones((k, k)) / k)


def prune(matrix: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``matrix`` with floor(beta * size) entries, drawn without replacement, set to zero."""
    flat = matrix.flatten()
    flat[rng.choice(flat.size, int(np.floor(beta * flat.size)), replace=False)] = 0.0
    return flat.reshape(matrix.shape)


def tune(sparse: np.ndarray, steps: int = STEPS, lr: float = LR) -> np.ndarray:
    """The reference's norm-and-angle objective on the non-zero entries (float32, as the reference)."""
    weights = torch.tensor(sparse, dtype=torch.float32, requires_grad=True)
    mask = (weights != 0).float()
    optimizer = torch.optim.Adam([weights], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        norms = torch.norm(weights, p=2, dim=0)
        norm_loss = torch.sum((norms - NORM_TARGET) ** 2)
        unit = weights / norms
        cosines = unit.t() @ unit
        cosines = cosines.masked_fill(torch.eye(len(norms), dtype=torch.bool), -1.0)  # a column's own cosine
        angle_loss = -torch.acos(cosines.max(dim=1)[0].clamp(-0.99999, 0.99999)).mean()
        (norm_loss + angle_loss).backward()
        weights.grad *= mask  # type: ignore[operator]
        optimizer.step()
    return weights.detach().numpy().astype(np.float32)


@functools.cache
def sse_c(d: int, k: int, beta: float = 0.6, seed: int = 0, steps: int = STEPS) -> np.ndarray:
    """The K x d SSE-C weight (rows are classes), the same for the same arguments in every process.

    Tuning takes seconds, so the result is also cached on disk (``$FEDLEDGER_CACHE``), under a lock.
    """
    from fedledger.simulation.cache import build_once, cache_dir

    path = cache_dir() / f"sse-c-d{d}-k{k}-beta{beta}-seed{seed}-steps{steps}.npy"

    def build(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        with tmp.open("wb") as handle:
            np.save(handle, tune(prune(simplex_etf(d, k, rng), beta, rng), steps=steps).T.copy())

    build_once(path, build)
    rows = np.load(path)
    rows.setflags(write=False)
    return rows
