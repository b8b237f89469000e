"""The plug-in point: a strategy is a server-side Flower strategy plus its client algorithm.

A plug-in is registered under the entry-point group ``fedledger.strategies`` and names its
default task. It also says how a voter scores a model and how one update becomes a candidate
model for per-update voting.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import Strategy
from pydantic import BaseModel

from fedledger.simulation.attacks import Attack, PoisonContext
from fedledger.simulation.tasks import ClientData, Split, Task, TrainSettings, load_arrays, model_arrays

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
    """Base of strategy plug-ins: override what differs from plain local SGD + FedAvg-style updates.

    The *state* is what the chain's global model hash covers: for most strategies the model's
    arrays; a strategy may keep something else (FedKSeed: a K-vector of scalar gradients) and
    say how to build the model from it (:meth:`build`).
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    default_task: ClassVar[str] = "digits"
    sparse_sync: ClassVar[bool] = False
    """True: nodes keep the state and receive only its changes (:mod:`.sync`)."""
    aggregates_from_previous: ClassVar[bool] = False
    """True: the aggregate depends on the previous state (audits must fetch it)."""
    semi_supervised: ClassVar[bool] = False
    """True: clients train without labels (tasks whose clients hold none need such a strategy)."""
    model_updates: ClassVar[bool] = True
    """True: an update is (part of) a model, so vote rules may compare model changes."""
    bounded_aggregate: ClassVar[bool] = False
    """True: a governed round bounds each update's change by the round's median before aggregating
    (FLAME's clipping, :mod:`.bound`; see :meth:`governed_aggregate`)."""
    default_vote_rule: ClassVar[str] = "reference"
    """The vote rule a task of this strategy gets unless its deployment names one (client/voting.py)."""
    unsupported_attacks: ClassVar[frozenset[str]] = frozenset()
    """Update attacks that mean nothing for this strategy's updates (refused before a run starts)."""

    config: BaseModel | None = None
    """Hyper-parameters (a pydantic model) of strategies that take ``--strategy-option``."""

    def with_options(self, options: dict[str, str]) -> FedledgerStrategy:
        """A copy with hyper-parameters from ``--strategy-option KEY=VALUE`` (validated by :attr:`config`)."""
        if not options:
            return self
        if self.config is None:
            raise ValueError(f"strategy {self.name!r} takes no options, got {sorted(options)}")
        try:
            config = type(self.config).model_validate({**self.config.model_dump(), **options})
        except ValueError as exc:
            raise ValueError(f"bad {self.name} option: {exc}") from exc
        return type(self)(config)  # type: ignore[call-arg]

    def server_strategy(self, *, fraction_train: float = 1.0) -> Strategy:
        """The Flower Message-API strategy that aggregates updates (and samples nodes without governance)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state

    def initial_state(self, task: Task, seed: int) -> Arrays:
        """The state a run starts from: the task's freshly built model."""
        return model_arrays(task.build_model(seed))

    def blank_state(self) -> Arrays | None:
        """With sparse sync: the state a node that holds nothing syncs from."""
        return None

    def build(self, task: Task, seed: int, state: Arrays) -> torch.nn.Module:
        """The model of a state."""
        return load_arrays(task.build_model(seed), state)

    # ----------------------------------------------------------------- client

    def client_train(
        self, task: Task, model: torch.nn.Module, data: ClientData, settings: TrainSettings
    ) -> dict[str, float]:
        """The client's training algorithm: local SGD on its training split by default."""
        return task.fit(model, data.train, settings)

    def client_update(
        self,
        task: Task,
        seed: int,
        state: Arrays,
        data: ClientData,
        settings: TrainSettings,
        private: dict[str, Arrays] | None = None,
    ) -> tuple[Arrays, dict[str, float]]:
        """What a client uploads after training from ``state``: by default its trained model.

        ``private`` is the client's own storage across rounds (never sent anywhere), e.g. a
        personalised head; a strategy reads and replaces its entries.
        """
        model = self.build(task, seed, state)
        metrics = self.client_train(task, model, data, settings)
        return model_arrays(model), metrics

    def client_report(
        self, task: Task, seed: int, state: Arrays, data: ClientData, private: dict[str, Arrays] | None = None
    ) -> dict[str, float]:
        """A client's own evaluation at the end of a run: the global model on its local test set."""
        if data.test is None or len(data.test) == 0:
            return {}
        return {"personalized_accuracy": task.evaluate(self.build(task, seed, state), data.test)["accuracy"]}

    def extra_metrics(self, task: Task, model: torch.nn.Module, data: Split) -> dict[str, float]:
        """Strategy-specific metrics of a global model on the server's test set (none by default)."""
        return {}

    def poison(self, attack: Attack, state: Arrays, update: Arrays, context: PoisonContext | None = None) -> Arrays:
        """A simulated attacker's version of ``update`` (``context``: randomness, ALIE's estimate)."""
        return attack.poison_update(state, update, context)

    # ----------------------------------------------------------------- server

    def check_update(self, state: Arrays, update: Arrays) -> None:
        """Raise ValueError when ``update`` cannot be applied to ``state`` (a malformed upload)."""
        if list(update) != list(state) or any(update[k].shape != v.shape for k, v in state.items()):
            raise ValueError("the update's arrays do not match the model's")

    def apply_update(self, global_arrays: Arrays, update: Arrays, share: float) -> Arrays:
        """The model one update leads to when it is aggregated with weight ``share`` (its example share).

        By default an update is a whole trained model and the aggregate a weighted mean, so the
        update moves the global model by ``share`` times its difference: voters judge each update
        at the scale it will be applied. See docs/decisions.md for why not the raw local model.
        """
        return self.apply_updates(global_arrays, [(update, share)])

    def apply_updates(self, global_arrays: Arrays, weighted: list[tuple[Arrays, float]]) -> Arrays:
        """``global + sum(share * (update - global))`` over the arrays each update carries.

        With shares summing to 1 this is the weighted-mean aggregate of the updates; vote rules
        use it to judge an update at its share, at full weight (1) or inside the round's aggregate.
        """
        for update, _ in weighted:
            self.check_update(global_arrays, update)
        result: Arrays = OrderedDict()
        for k, g in global_arrays.items():
            moved = g
            for update, share in weighted:
                if k in update:
                    moved = moved + share * (update[k] - g)
            result[k] = np.asarray(moved).astype(g.dtype)
        return result

    def aggregate(
        self, strategy: Strategy, server_round: int, previous: Arrays, updates: list[tuple[Arrays, int]]
    ) -> Arrays:
        """The Flower strategy's aggregate of (update, example count) pairs, in the given order."""
        _outside_flower_as_local_run()
        replies = [
            Message(
                content=RecordDict({"arrays": to_record(arrays), "metrics": MetricRecord({"num-examples": n})}),
                message_type=MessageType.TRAIN,
                dst_node_id=0,
            )
            for arrays, n in updates
        ]
        aggregated, _metrics = strategy.aggregate_train(server_round, replies)
        if aggregated is None:
            raise RuntimeError(f"strategy {type(strategy).__name__} returned no aggregate in round {server_round}")
        return from_record(aggregated)

    def bound_updates(self, previous: Arrays, updates: list[tuple[Arrays, int]]) -> list[tuple[Arrays, int]]:
        """The ``updates`` a governed round aggregates: bounded by their median change if :attr:`bounded_aggregate`."""
        from .bound import bound_to_median

        return bound_to_median(previous, updates) if self.bounded_aggregate else list(updates)

    def governed_aggregate(
        self,
        strategy: Strategy,
        server_round: int,
        previous: Arrays,
        updates: list[tuple[Arrays, int]],
        *,
        per_update: bool,
    ) -> Arrays:
        """A governed round's aggregate: of the updates its votes admitted (per-update), or its candidate (aggregate).

        The coordinator and the in-process engine compute it here, the audit with
        :meth:`governed_aggregate_offline`: per-update, :meth:`aggregate` of :meth:`bound_updates`.
        An aggregate-mode candidate is the plain aggregate of every proposal: its votes judge the
        aggregate itself (arXiv:2307.00543), and a bound that let poisoned updates hide inside an
        acceptable candidate would pay their proposers with it (measured: `fedledger simulate --seed
        1 --attackers 2 --attack scale:-10 --vote-mode aggregate` accepted every round and paid the
        attackers +1.00 ETH each, against -0.23 ETH without the bound).
        """
        admitted = self.bound_updates(previous, updates) if per_update else updates
        return self.aggregate(strategy, server_round, previous, admitted)

    def governed_aggregate_offline(self, previous: Arrays, updates: list[tuple[Arrays, int]]) -> Arrays | None:
        """:meth:`governed_aggregate` of a per-update round without Flower messages, for audits (None: not offline)."""
        return self.aggregate_offline(previous, self.bound_updates(previous, updates))

    def aggregate_offline(self, previous: Arrays | None, updates: list[tuple[Arrays, int]]) -> Arrays | None:
        """The aggregate of (update, example count) pairs without Flower messages, for audits.

        Must equal what :meth:`aggregate` computes for the same updates in the same order;
        ``None`` when the strategy cannot be recomputed offline. ``previous`` is the state the
        round started from (given when :attr:`aggregates_from_previous`).
        """
        return None

    def score(self, task: Task, model: torch.nn.Module, data: Split) -> float:
        """What a voter compares on its validation split (higher is better)."""
        return task.score(model, data)

    def judge(
        self, task: Task, seed: int, state: Arrays, data: Split, private: dict[str, Arrays] | None = None
    ) -> Callable[[torch.nn.Module], float]:
        """A voter's scoring function for one round that starts from ``state`` (higher is better).

        By default :meth:`score` on the voter's validation split; a strategy whose voters hold
        no labels derives the reference from ``state`` or its ``private`` storage (FedSTO).
        """
        return lambda model: self.score(task, model, data)

    def server_update(self, task: Task, seed: int, server_round: int, state: Arrays) -> Arrays:
        """What the server does to an aggregate before it becomes the global state (nothing by default).

        FedSTO trains it on the server's labeled data. It runs on the coordinator, which may hold
        data no one else has, so :meth:`aggregate_offline` of such a strategy returns None.
        """
        return state

    def describe(self) -> str:
        """One line for ``fedledger strategies``."""
        return f"{self.name}: {self.paper}"


def _outside_flower_as_local_run() -> None:
    """Give this process a task identity when no Flower app set one (Flower 1.41's Message needs a run id).

    Inside a ServerApp Flower sets it; the in-process study (simulation/inprocess.py) and tests
    aggregate outside any app, as one local run.
    """
    from flwr.supercore.task_identity import TaskIdentity

    try:
        TaskIdentity.run_id  # noqa: B018 (raises when unset)
    except RuntimeError:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 0, 0, 0


def to_record(arrays: Arrays) -> ArrayRecord:
    """Arrays as a Flower ArrayRecord."""
    # np.require, not np.ascontiguousarray: the latter turns 0-d arrays (e.g. batch norm's
    # num_batches_tracked) into shape (1,), and the state would no longer hash as on chain.
    return ArrayRecord(
        OrderedDict((name, Array(np.require(value, requirements="C"))) for name, value in arrays.items())
    )


def from_record(record: ArrayRecord) -> Arrays:
    """A Flower ArrayRecord as numpy arrays."""
    return OrderedDict((name, array.numpy()) for name, array in record.items())
