"""Long-tailed digits: scikit-learn's digits made long-tailed and dealt by Dirichlet (FedLoGe's setting).

The 20 % held-out split stays balanced (the generic model's test set); the rest is cut to
n_c = floor(n_max * IF^(c / (C - 1))) per class (IF 0.1; n_max the smallest class's size, so
every count is available), then each class is dealt over the clients by Dirichlet(alpha)
(alpha 0.5, or ``--partition dirichlet:ALPHA``). Each client keeps 20 % of its share for voting
and gets a local test set mirroring its label distribution.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..longtail import dirichlet_split, local_test_sizes, long_tail_counts, shot_split
from ..partition import parse_partitioning
from .base import ClientData, Split, seeded
from .digits import DigitsTask, _dataset

IMBALANCE = 0.1
ALPHA = 0.5
VAL_FRACTION = 0.2
FEATURES = 32


class LongTailMLP(torch.nn.Module):
    """A 64-64-32 backbone with batch norm (32 features >= 10 classes, as an ETF needs) and a linear head.

    Batch norm bounds the features as the reference's ResNets do: trained through the SSE-C,
    whose columns have norm 0.1, an unnormalised backbone inflates its features until the
    heads trained on them diverge.
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Linear(64, 64),
            torch.nn.BatchNorm1d(64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, FEATURES),
            torch.nn.BatchNorm1d(FEATURES),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's features h."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.backbone(x))


@functools.cache
def long_tail(seed: int, num_clients: int, alpha: float) -> tuple[Split, list[np.ndarray], np.ndarray]:
    """(long-tailed pool, each client's pool indices, clients x classes training counts)."""
    pool, _ = _dataset(seed)
    rng = np.random.default_rng(seed + 31)
    available = np.bincount(pool.y, minlength=10)
    counts = long_tail_counts(int(available.min()), 10, IMBALANCE)
    keep = np.concatenate([np.flatnonzero(pool.y == c)[:n] for c, n in enumerate(counts)])
    tail_pool = Split(pool.x[keep], pool.y[keep])
    shares = dirichlet_split(tail_pool.y, num_clients, alpha, rng)
    matrix = np.array([np.bincount(tail_pool.y[s], minlength=10) for s in shares])
    return tail_pool, shares, matrix


class LongTailDigitsTask(DigitsTask):
    """Digits with a long-tailed, Dirichlet-dealt training pool and accuracies per head/middle/tail."""

    name = "ltdigits"
    local_test = True
    deals_iid = False  # FedLoGe's setting: long-tailed and Dirichlet-dealt (``iid`` -> alpha 0.5)
    min_batch = 2  # batch norm needs two samples

    def build_model(self, seed: int) -> torch.nn.Module:
        """The backbone-and-head MLP, initialised from ``seed``."""
        return seeded(seed, LongTailMLP)

    @staticmethod
    def _alpha(partitioning: str) -> float:
        parsed = parse_partitioning(partitioning)
        return float(parsed.alpha) if parsed.kind == "dirichlet" and parsed.alpha else ALPHA

    def client_data(self, partition_id: int, num_partitions: int, partitioning: str, seed: int) -> ClientData:
        """Client ``partition_id``'s long-tailed share, a voting split, and its mirrored local test set."""
        if not 0 <= partition_id < num_partitions:
            raise ValueError(f"partition {partition_id} out of range for {num_partitions} partitions")
        pool, shares, matrix = long_tail(seed, num_partitions, self._alpha(partitioning))
        indices = np.random.default_rng(seed + 1_000 + partition_id).permutation(shares[partition_id])
        n_val = max(1, int(VAL_FRACTION * len(indices)))
        val, train = indices[:n_val], indices[n_val:]
        test = self.test_data(seed)
        sizes = local_test_sizes(matrix, len(test))[partition_id]
        rng = np.random.default_rng(seed + 2_000 + partition_id)
        picked = np.concatenate(
            [rng.choice(np.flatnonzero(test.y == c), size=min(n, int((test.y == c).sum())), replace=False)
             for c, n in enumerate(sizes)]
        ).astype(np.int64)  # fmt: skip
        return ClientData(
            Split(pool.x[train], pool.y[train]), Split(pool.x[val], pool.y[val]), Split(test.x[picked], test.y[picked])
        )

    def class_split(self, seed: int, num_clients: int, partitioning: str) -> dict[str, list[int]]:
        """Head, middle and tail classes of the federation's training distribution."""
        _, _, matrix = long_tail(seed, num_clients, self._alpha(partitioning))
        return shot_split(matrix.sum(axis=0))

    def group_metrics(
        self, model: torch.nn.Module, data: Split, seed: int, num_clients: int, partitioning: str
    ) -> dict[str, float]:
        """Accuracy over the head, middle and tail classes of the federation's training distribution."""
        split = self.class_split(seed, num_clients, partitioning)
        model.eval()
        with torch.no_grad():
            predicted = model(torch.from_numpy(data.x)).argmax(dim=1).numpy()
        metrics = {}
        for group, classes in split.items():
            mask = np.isin(data.y, classes)
            metrics[f"accuracy_{group}"] = (
                float((predicted[mask] == data.y[mask]).mean()) if mask.any() else float("nan")
            )
        return metrics
