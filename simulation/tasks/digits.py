"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes) with a small MLP; no download."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..partition import parse_partitioning, partition
from .base import ClientData, Split, Task, TrainSettings, batches_of, package_data, seeded

TEST_FRACTION = 0.2
VAL_FRACTION = 0.3


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits shipped inside scikit-learn, read without importing scikit-learn.

    Importing sklearn costs each simulated client process over a second; the data is one CSV
    (64 pixel values and the label per row) in its package data.
    """
    path = package_data("sklearn", "datasets", "data", "digits.csv.gz")
    if path is None:
        try:
            from sklearn.datasets import load_digits as sklearn_load_digits
        except ImportError as exc:
            raise RuntimeError("scikit-learn is not installed; it ships the digits data") from exc
        return sklearn_load_digits(return_X_y=True)  # type: ignore[no-any-return]
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def shuffled_split(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[Split, Split]:
    """(client pool, server test set): ``x`` and ``y`` shuffled by ``seed``, the first 20 % held out."""
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order].astype(np.int64)
    n_test = int(TEST_FRACTION * len(y))
    return Split(x[n_test:], y[n_test:]), Split(x[:n_test], y[:n_test])


@functools.cache
def _dataset(seed: int) -> tuple[Split, Split]:
    """(client pool, server test set), shuffled deterministically."""
    x, y = load_digits()
    return shuffled_split((x / 16.0).astype(np.float32), y, seed)


class DigitsTask(Task):
    """Digits classification with a 64-64-10 MLP, trained by local SGD with momentum."""

    name = "digits"
    num_classes = 10
    min_batch = 1
    max_grad_norm: float | None = None
    """Clip each step's gradient to this norm (None: no clipping)."""

    def dataset(self, seed: int) -> tuple[Split, Split]:
        """(client pool, server test set) for ``seed``."""
        return _dataset(seed)

    def build_model(self, seed: int) -> torch.nn.Module:
        """The MLP, initialised from ``seed``."""
        return seeded(
            seed, lambda: torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
        )

    def client_data(self, partition_id: int, num_partitions: int, partitioning: str, seed: int) -> ClientData:
        """Client ``partition_id``'s share of the pool, 30 % of it kept for voting."""
        if not 0 <= partition_id < num_partitions:
            raise ValueError(f"partition {partition_id} out of range for {num_partitions} partitions")
        pool, _ = self.dataset(seed)
        indices = partition(pool.y, num_partitions, parse_partitioning(partitioning), seed)[partition_id]
        indices = np.random.default_rng(seed + 1_000 + partition_id).permutation(indices)
        n_val = max(1, int(VAL_FRACTION * len(indices)))
        val, train = indices[:n_val], indices[n_val:]
        return ClientData(Split(pool.x[train], pool.y[train]), Split(pool.x[val], pool.y[val]))

    def test_data(self, seed: int) -> Split:
        """The 20 % of the digits held out for the server."""
        return self.dataset(seed)[1]

    def fit(self, model: torch.nn.Module, data: Split, settings: TrainSettings) -> dict[str, float]:
        """Mini-batch SGD (momentum 0.9; clipped to ``max_grad_norm``) for ``local_epochs`` epochs; deterministic."""
        if len(data) == 0:
            return {"train_loss": float("nan")}
        generator = torch.Generator().manual_seed(int(settings.seed))
        optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
        x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        model.train()
        total, batches = 0.0, 0
        for _ in range(settings.local_epochs):
            for batch in batches_of(len(y), settings.batch_size, generator, self.min_batch):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                if self.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
                optimizer.step()
                total += loss.item()
                batches += 1
        return {"train_loss": total / max(batches, 1)}

    def predict(self, model: torch.nn.Module, data: Split) -> np.ndarray:
        """The arg-max class per example."""
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(data.x)).argmax(dim=1).numpy()

    def evaluate(self, model: torch.nn.Module, data: Split) -> dict[str, float]:
        """Accuracy and mean cross-entropy (both NaN on no data: a member dealt no samples)."""
        if len(data) == 0:
            return {"accuracy": float("nan"), "loss": float("nan")}
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(data.x))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.y))
            accuracy = (logits.argmax(dim=1).numpy() == data.y).mean()
        return {"accuracy": float(accuracy), "loss": float(loss)}
