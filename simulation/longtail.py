"""Long-tailed federated data as FedLoGe builds it (arXiv:2401.08977, reference ZackZikaiXiao/FedLoGe).

- Class sizes n_c = floor(n_max * IF^(c / (C - 1))) (``get_img_num_per_cls``, type ``exp``).
- Each class is dealt over the clients by Dirichlet(alpha) proportions
  (``non_iid_dirichlet_sampling`` with every client eligible for every class).
- A client's local test set mirrors its training distribution: int(n_kc / N * n_test) test
  samples of class c, drawn from the balanced test set.
- Head / middle / tail: classes sorted by size, cut where the cumulative share crosses 75 %
  and 95 % (``shot_split``).
"""

from __future__ import annotations

import numpy as np


def long_tail_counts(n_max: int, num_classes: int, imbalance: float) -> list[int]:
    """n_c = floor(n_max * IF^(c / (C - 1))) for c = 0 .. C-1."""
    if not 0 < imbalance <= 1:
        raise ValueError(f"the imbalance factor must lie in (0, 1], got {imbalance}")
    if num_classes < 2:
        raise ValueError("a long tail needs at least two classes")
    return [int(np.floor(n_max * imbalance ** (c / (num_classes - 1)))) for c in range(num_classes)]


def dirichlet_split(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator, min_size: int = 2
) -> list[np.ndarray]:
    """Indices of ``labels`` per client: each class dealt by Dirichlet(alpha) proportions.

    The reference draws until no client is empty of classes; here every client is eligible for
    every class (its p = 1), and the whole deal is redrawn while a client holds fewer than
    ``min_size`` samples (a client needs something to train and vote on).
    """
    for _ in range(1000):
        shares: list[list[int]] = [[] for _ in range(num_clients)]
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            proportions = rng.dirichlet([alpha] * num_clients)
            owners = rng.choice(num_clients, size=len(members), p=proportions)
            for client in range(num_clients):
                shares[client].extend(members[owners == client].tolist())
        if min(len(s) for s in shares) >= min_size:
            return [np.array(sorted(s), dtype=np.int64) for s in shares]
    raise ValueError(f"could not give each of {num_clients} clients {min_size} samples with alpha {alpha}")


def local_test_sizes(train_counts: np.ndarray, test_total: int) -> np.ndarray:
    """int(n_kc / N * n_test) per client k and class c (``train_counts`` is clients x classes)."""
    total = train_counts.sum()
    return (train_counts / total * test_total).astype(np.int64)


def shot_split(class_counts: np.ndarray, thresholds: tuple[float, float] = (75.0, 95.0)) -> dict[str, list[int]]:
    """Head, middle and tail classes: sorted by size, cut where the cumulative percentage crosses.

    The class in whose share the 75 % (95 %) mark falls is the last head (middle) class, as in the
    reference's ``shot_split`` (ties keep class order).
    """
    order = sorted(range(len(class_counts)), key=lambda c: -class_counts[c])
    sizes = np.array([class_counts[c] for c in order], dtype=np.float64)
    cumulative = np.cumsum(sizes) / sizes.sum() * 100
    previous = np.concatenate([[0.0], cumulative[:-1]])
    cut1 = cut2 = 0
    for i, (low, high) in enumerate(zip(previous, cumulative, strict=True)):
        if low < thresholds[0] <= high:
            cut1 = i
        if low < thresholds[1] <= high:
            cut2 = i
    return {
        "head": [order[i] for i in range(len(order)) if i <= cut1],
        "middle": [order[i] for i in range(len(order)) if cut1 < i <= cut2],
        "tail": [order[i] for i in range(len(order)) if i > cut2],
    }
