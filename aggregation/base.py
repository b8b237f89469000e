"""The plug-in point: a strategy is a server-side Flower strategy plus its client algorithm.

A plug-in is registered under the entry-point group ``fedledger.strategies`` and names its
default task. It also says how a voter scores a model and how one update becomes a candidate
model for per-update voting.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch
from flwr.serverapp.strategy import Strategy

from fedledger.simulation.tasks import ClientData, Split, Task, TrainSettings

Arrays = OrderedDict[str, np.ndarray]


@contextlib.contextmanager
def quiet_flower(level: int = logging.ERROR) -> Iterator[None]:
    """Silence Flower's logger (e.g. its warning that federated evaluation is off, which is on purpose)."""
    from flwr.supercore.logger import FLOWER_LOGGER

    previous = FLOWER_LOGGER.level
    FLOWER_LOGGER.setLevel(level)
    try:
        yield
    finally:
        FLOWER_LOGGER.setLevel(previous)


class FedledgerStrategy:
    """Base of strategy plug-ins: override what differs from plain local SGD + FedAvg-style updates."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    default_task: ClassVar[str] = "digits"

    def server_strategy(self, *, fraction_train: float = 1.0) -> Strategy:
        """The Flower Message-API strategy that aggregates updates (and samples nodes without governance)."""
        raise NotImplementedError

    def client_train(
        self, task: Task, model: torch.nn.Module, data: ClientData, settings: TrainSettings
    ) -> dict[str, float]:
        """The client's training algorithm: local SGD on its training split by default."""
        return task.fit(model, data.train, settings)

    def apply_update(self, global_arrays: Arrays, update: Arrays, share: float) -> Arrays:
        """The model one update leads to when it is aggregated with weight ``share`` (its example share).

        By default an update is a whole trained model and the aggregate a weighted mean, so the
        update moves the global model by ``share`` times its difference: voters judge each update
        at the scale it will be applied. See docs/decisions.md for why not the raw local model.
        """
        if list(update) != list(global_arrays) or any(update[k].shape != v.shape for k, v in global_arrays.items()):
            raise ValueError("the update's arrays do not match the model's")
        return OrderedDict((k, (g + share * (update[k] - g)).astype(g.dtype)) for k, g in global_arrays.items())

    def aggregate_offline(self, updates: list[tuple[Arrays, int]]) -> Arrays | None:
        """The aggregate of (update, example count) pairs without Flower messages, for audits.

        Must equal what :meth:`server_strategy` computes for the same updates in the same order;
        ``None`` when the strategy cannot be recomputed offline.
        """
        return None

    def score(self, task: Task, model: torch.nn.Module, data: Split) -> float:
        """What a voter compares on its validation split (higher is better)."""
        return task.score(model, data)

    def describe(self) -> str:
        """One line for ``fedledger strategies``."""
        return f"{self.name}: {self.paper}"
