"""What a task provides: a model, client and test data, local training, evaluation and a voter score."""

from __future__ import annotations

import hashlib
import importlib.util
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """Features and labels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class ClientData:
    """A client's local data: what it trains on and what it votes with."""

    train: Split
    val: Split
    test: Split | None = None
    """A local test set (tasks with personalised evaluation, e.g. mirroring the client's labels)."""


@dataclass(frozen=True)
class TrainSettings:
    """Local training hyper-parameters."""

    local_epochs: int = 5
    lr: float = 0.1
    batch_size: int = 32
    seed: int = 0
    round: int = 0
    """The server round being trained (strategies with phases, e.g. FedSTO, read it)."""


def derived_seed(*parts: object) -> int:
    """A 32-bit seed from ``parts`` (e.g. run seed, round, client), identical in every process."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


_T = TypeVar("_T")


def seeded(seed: int, make: Callable[[], _T]) -> _T:
    """``make()`` with torch's generator seeded by ``seed``; the caller's random stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        # Only the CPU generator: torch.manual_seed also queues a lazy seeding of each accelerator
        # backend, recording a stack trace per call (milliseconds; a study builds thousands of models).
        torch.default_generator.manual_seed(seed)
        return make()


def package_data(package: str, *parts: str) -> Path | None:
    """A data file shipped inside an installed ``package``, found without importing it (None if absent)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    return path if path.is_file() else None


def batches_of(size: int, batch_size: int, generator: torch.Generator, min_size: int = 1) -> list[torch.Tensor]:
    """A shuffled epoch of ``size`` indices in batches, dropping a trailing batch under ``min_size``."""
    return [b for b in torch.randperm(size, generator=generator).split(batch_size) if len(b) >= min_size]


def model_arrays(model: torch.nn.Module) -> OrderedDict[str, np.ndarray]:
    """A model's parameters and buffers as numpy arrays, in ``state_dict`` order."""
    return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in model.state_dict().items())


def load_arrays(model: torch.nn.Module, arrays: dict[str, np.ndarray]) -> torch.nn.Module:
    """Load numpy arrays into ``model`` (shapes and names must match); return it."""
    model.load_state_dict(OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in arrays.items()), strict=True)
    return model


class Task(ABC):
    """A federated learning task that runs on a CPU in seconds and needs no download."""

    name: str
    num_classes: int
    local_test: bool = False
    """Clients hold local test sets (``ClientData.test``): the run ends with their own evaluations."""
    labeled_clients: bool = True
    """False: clients hold unlabeled data (only a semi-supervised strategy can train them)."""
    deals_iid: bool = True
    """False: the task always deals its pool by Dirichlet, and ``iid`` means its default alpha."""

    @abstractmethod
    def build_model(self, seed: int) -> torch.nn.Module:
        """A freshly initialised model (deterministic for a seed)."""

    @abstractmethod
    def client_data(self, partition_id: int, num_partitions: int, partitioning: str, seed: int) -> ClientData:
        """The local data of client ``partition_id`` (deterministic for a seed)."""

    @abstractmethod
    def test_data(self, seed: int) -> Split:
        """The server's held-out test set for reports."""

    @abstractmethod
    def fit(self, model: torch.nn.Module, data: Split, settings: TrainSettings) -> dict[str, float]:
        """Train ``model`` in place on ``data``; return training metrics."""

    @abstractmethod
    def evaluate(self, model: torch.nn.Module, data: Split) -> dict[str, float]:
        """The task's metrics of ``model`` on ``data`` (at least ``accuracy`` and ``loss``)."""

    def group_metrics(
        self, model: torch.nn.Module, data: Split, seed: int, num_clients: int, partitioning: str
    ) -> dict[str, float]:
        """Metrics that depend on the federation's data (e.g. accuracy per class group); none by default."""
        return {}

    def predict(self, model: torch.nn.Module, data: Split) -> np.ndarray | None:
        """The class ``model`` predicts for each example of ``data``; None for tasks that do not classify."""
        return None

    def score(self, model: torch.nn.Module, data: Split) -> float:
        """The number a voter compares (higher is better): exp(-mean cross-entropy) by default.

        It is the geometric-mean probability the model gives the true labels: continuous (a
        voter's small validation split makes accuracy jumpy), and a model that confidently
        predicts wrong labels scores near 0, below an untrained one. See docs/decisions.md.
        """
        return math.exp(-self.evaluate(model, data)["loss"])
