"""FedKSeed and FedKSeed-Pro: federated full-parameter tuning with K seeds and scalar gradients.

Qin, Chen, Qian, Ding, Li, Deng, "Federated Full-Parameter Tuning of Billion-Sized Language
Models with Communication Cost under 18 Kilobytes", ICML 2024, arXiv:2312.06353; reference
code zhenqincn/FedKSeed (read for every detail below; this is an independent implementation).

- The server draws K candidate seeds once; here they are derived from one 63-bit root the
  global state carries, so every party knows them without their being sent.
- A client runs ``steps`` MeZO steps (:mod:`.mezo`), each with a seed drawn from the candidates
  (uniformly; Pro: with the importance probabilities), and uploads the (seed index, scalar
  gradient) pair of every step that was not skipped. Nothing else leaves the client.
- The server adds the pairs into a K-vector G, each client weighted by its share of examples
  (or equally): G_j += sum_c w_c g_cj. The global model is theta0 replayed with G
  (constant lr and no weight decay make the steps commute).
- Pro: each seed's history of scalar gradients starts at [0]; importance a_j = mean
  |clip(g, -c, c)|; probabilities = softmax of min-max-normalised importance, each round.

The global state, whose hash the chain records, is {base: keccak of theta0's canonical bytes,
seed-root, seed-grads: G} plus, for Pro, the histories' sums of |clipped g| and counts. Nodes
sync it sparsely (:mod:`.sync`) and replay only the seeds whose entry changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import ClassVar, Literal

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp import strategy as flwr_strategy
from pydantic import BaseModel, ConfigDict, Field
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)

from fedledger import codec
from fedledger.simulation.attacks import Attack, PoisonContext
from fedledger.simulation.tasks import ClientData, Task, TrainSettings, model_arrays

from .base import Arrays, FedledgerStrategy, from_record, quiet_flower, to_record
from .mezo import Accumulator, zo_step

BASE, ROOT, GRADS, ABS_SUM, COUNT = "base", "seed-root", "seed-grads", "history-abs-sum", "history-count"
INDEX, GRAD = "seed-index", "grad"
SEED_HIGH = 100_000_000_000
"""Candidate seeds lie in [1, 1e11), as in the reference code."""
STATE_DTYPE = np.float32
"""G and the Pro sums are float32, as the paper counts them (K x 4 bytes): every party adds in
float64 and rounds once per client, in the same order, so the state is the same bit for bit."""


class FedKSeedConfig(BaseModel):
    """Hyper-parameters; the reference code's defaults unless said otherwise (docs/fedkseed.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(default=4096, ge=1, le=2**31 - 1, description="number of candidate seeds")
    steps: int = Field(default=200, ge=1, description="local steps tau per round")
    eps: float = Field(default=5e-4, gt=0, description="perturbation scale")
    lr: float = Field(default=3e-5, gt=0, description="constant learning rate (tuned for the tiny GPT)")
    batch_size: int = Field(default=16, ge=1, description="windows per step")
    clip: float = Field(default=1000.0, gt=0, description="Pro: |g| clip for importance")
    grad_clip: float = Field(default=0.0, ge=0, description="skip a step when |L+ - L-| exceeds this (0: off)")
    equal_weight: bool = Field(default=False, description="weigh clients equally, not by examples")
    tune: Literal["all", "bias"] = Field(
        default="all",
        description="the parameters perturbed: all (the paper) or only biases and layer norms (BitFit's subset)",
    )
    pro: bool = False


def tuned(name: str, tune: str) -> bool:
    """Whether parameter ``name`` is perturbed under ``tune`` (``bias``: biases and layer norms)."""
    return tune == "all" or name.endswith("bias") or "layernorm" in name


# ----------------------------------------------------------------- pure functions


def candidate_seeds(root: int, k: int) -> np.ndarray:
    """The K candidate seeds derived from ``root`` (numpy's PCG64: the same on every platform)."""
    return np.random.default_rng(int(root)).integers(1, SEED_HIGH, size=k, dtype=np.int64)


def min_max_norm(values: np.ndarray) -> np.ndarray:
    """(v - min) / (max + 1e-10 - min), as in the reference code."""
    low = np.min(values)
    return (values - low) / (np.max(values) + 1e-10 - low)


def softmax(values: np.ndarray) -> np.ndarray:
    """A numerically stable softmax."""
    shifted = np.exp(values - np.max(values))
    return shifted / np.sum(shifted)


def seed_probabilities(abs_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """FedKSeed-Pro's sampling probabilities from each seed's history (sum of |clip(g)| and length)."""
    if np.any(count < 1):
        raise ValueError("every seed's history holds at least its initial value")
    return softmax(min_max_norm(abs_sum / count))


def blank_state(k: int, pro: bool) -> Arrays:
    """What a node that holds nothing syncs from: zeros, and Pro histories of length 1 ([0]).

    It equals the initial state except for ``base`` and ``seed-root``, so a first sync costs
    only those two entries and the changes since.
    """
    state: Arrays = OrderedDict(
        [(BASE, np.zeros(32, np.uint8)), (ROOT, np.zeros(1, np.int64)), (GRADS, np.zeros(k, STATE_DTYPE))]
    )
    if pro:
        state[ABS_SUM] = np.zeros(k, STATE_DTYPE)
        state[COUNT] = np.ones(k, np.int32)
    return state


def initial_state(base: bytes, root: int, k: int, pro: bool) -> Arrays:
    """G = 0 over theta0 (hash ``base``); Pro: every history is [grad_initial = 0]."""
    state = blank_state(k, pro)
    state[BASE] = np.frombuffer(base, dtype=np.uint8).copy()
    state[ROOT] = np.array([root], np.int64)
    return state


def check_update(update: Arrays, k: int, max_steps: int) -> None:
    """Raise ValueError unless ``update`` is at most ``max_steps`` finite (seed index < k, g) pairs."""
    if list(update) != [INDEX, GRAD]:
        raise ValueError(f"a FedKSeed update holds {INDEX!r} and {GRAD!r} only, got {list(update)}")
    index, grad = update[INDEX], update[GRAD]
    if index.ndim != 1 or grad.ndim != 1 or index.shape != grad.shape:
        raise ValueError("seed indices and gradients must be two vectors of one length")
    if index.dtype != np.int32 or grad.dtype != np.float32:
        raise ValueError(f"expected int32 seed indices and float32 gradients, got {index.dtype} and {grad.dtype}")
    if len(index) > max_steps:
        raise ValueError(f"{len(index)} pairs exceed the {max_steps} local steps of a round")
    if len(index) and (index.min() < 0 or index.max() >= k):
        raise ValueError(f"seed index out of range [0, {k})")
    if not np.all(np.isfinite(grad)):
        raise ValueError("scalar gradients must be finite")


def seed_sums(update: Arrays, k: int) -> np.ndarray:
    """The update's scalar gradients summed per seed (float64, length k)."""
    return np.bincount(update[INDEX], weights=update[GRAD].astype(np.float64), minlength=k)


def aggregate(previous: Arrays, updates: list[tuple[Arrays, int]], *, equal_weight: bool, clip: float) -> Arrays:
    """G += sum_c w_c * (client c's per-seed sums); Pro histories take every pair of every client.

    Weights are the clients' example shares (or 1/n), normalised, as in the reference code.
    """
    if not updates:
        raise ValueError("nothing to aggregate")
    k = len(previous[GRADS])
    weights = np.array([1.0 if equal_weight else float(n) for _, n in updates], dtype=np.float64)
    if np.any(weights <= 0):
        raise ValueError("every update needs a positive example count")
    weights /= weights.sum()
    state = OrderedDict((name, value.copy()) for name, value in previous.items())
    for (update, _), weight in zip(updates, weights, strict=True):
        state[GRADS] = _add(state[GRADS], weight * seed_sums(update, k))
        if ABS_SUM in state:
            clipped = np.abs(np.clip(update[GRAD].astype(np.float64), -clip, clip))
            state[ABS_SUM] = _add(state[ABS_SUM], np.bincount(update[INDEX], weights=clipped, minlength=k))
            state[COUNT] = state[COUNT] + np.bincount(update[INDEX], minlength=k).astype(np.int32)
    return state


def _add(values: np.ndarray, increment: np.ndarray) -> np.ndarray:
    """``values + increment`` computed in float64 and rounded once to the state's dtype."""
    return (values.astype(np.float64) + increment).astype(values.dtype)


def local_train(
    model: torch.nn.Module,
    data: ClientData,
    seeds: np.ndarray,
    probabilities: np.ndarray | None,
    config: FedKSeedConfig,
    rng_seed: int,
) -> tuple[Arrays, dict[str, float]]:
    """``config.steps`` MeZO steps on random batches of the client's windows; returns the pairs and metrics."""
    rng = np.random.default_rng(rng_seed)
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    if len(y) == 0:
        raise ValueError("this client has no training windows")
    model.eval()  # MeZO evaluates the model in inference mode
    indices, grads, losses = [], [], []
    for _ in range(config.steps):
        batch = torch.from_numpy(rng.integers(0, len(y), size=config.batch_size))
        j = int(rng.choice(len(seeds), p=probabilities))

        def loss_of(m: torch.nn.Module, batch: torch.Tensor = batch) -> torch.Tensor:
            logits = m(x[batch])
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[batch].reshape(-1))

        step = zo_step(model, loss_of, int(seeds[j]), eps=config.eps, lr=config.lr, grad_clip=config.grad_clip)
        losses.append(step.loss)
        if step.grad is not None:
            indices.append(j)
            grads.append(step.grad)
    update: Arrays = OrderedDict([(INDEX, np.array(indices, np.int32)), (GRAD, np.array(grads, np.float32))])
    metrics = {"train_loss": float(np.nanmean(losses)), "steps": float(len(indices))}
    return update, metrics


# ------------------------------------------------------------------ replay cache


class ReplayCache:
    """Models of global states, each rebuilt from the nearest one this process already has.

    Keeps a few float64 accumulators per theta0; a new state replays only the seeds whose G
    entry differs from the nearest cached one (the sparse sync of the paper's Section 3).
    """

    def __init__(self, size: int = 4) -> None:
        """Keep at most ``size`` accumulators per base model."""
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[tuple[bytes, int, str], list[Accumulator]] = {}
        self.replayed = 0

    def model(self, theta0: torch.nn.Module, state: Arrays, lr: float, tune: str = "all") -> torch.nn.Module:
        """``theta0`` (modified in place) set to the weights of ``state`` (its ``tune`` parameters replayed)."""
        key = (bytes(state[BASE]), int(state[ROOT][0]), tune)
        grads = state[GRADS]
        with self._lock:
            entries = self._entries.setdefault(key, [])
            if not entries:
                entries.append(Accumulator(theta0, candidate_seeds(key[1], len(grads)), lr))
            nearest = min(entries, key=lambda a: int(np.count_nonzero(a.grads != grads)))
            if np.array_equal(nearest.grads, grads):
                return nearest.load_into(theta0)
            branch = nearest.copy()
            self.replayed += branch.move_to(grads)
            entries.append(branch)
            if len(entries) > self.size:
                entries.pop(1)  # keep theta0's own accumulator (index 0) and the recent ones
            return branch.load_into(theta0)


_CACHE = ReplayCache()


# ----------------------------------------------------------------- Flower side


class FedKSeed(flwr_strategy.FedAvg):
    """Flower's FedAvg sampling and metrics; the arrays are FedKSeed's global state.

    ``configure_train`` keeps the state it sends, ``aggregate_train`` adds the replies' pairs to it.
    """

    def __init__(self, config: FedKSeedConfig, **kwargs: object) -> None:
        """FedAvg's options plus FedKSeed's hyper-parameters."""
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.fedkseed = config
        self.current: Arrays | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember the state the round starts from, then sample as FedAvg does."""
        self.current = from_record(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The state with the valid replies' pairs added (FedAvg's metric aggregation kept)."""
        if self.current is None:
            raise RuntimeError("aggregate_train before configure_train: the round's starting state is unknown")
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        updates = [
            (from_record(m.content[self.arrayrecord_key]), int(m.content["metrics"][self.weighted_by_key]))  # type: ignore[arg-type]
            for m in valid
        ]
        for update, _ in updates:
            check_update(update, len(self.current[GRADS]), self.fedkseed.steps)
        state = aggregate(self.current, updates, equal_weight=self.fedkseed.equal_weight, clip=self.fedkseed.clip)
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        return to_record(state), metrics


class FedKSeedStrategy(FedledgerStrategy):
    """The ``fedkseed`` plug-in (``fedkseed_pro`` with importance sampling of seeds)."""

    name = "fedkseed"
    paper = "Qin et al. ICML 2024, arXiv:2312.06353"
    default_task = "charlm"
    sparse_sync: ClassVar[bool] = True
    aggregates_from_previous: ClassVar[bool] = True
    model_updates: ClassVar[bool] = False  # (seed, scalar) pairs, not model changes
    default_vote_rule: ClassVar[str] = "share"
    unsupported_attacks: ClassVar[frozenset[str]] = frozenset({"alie"})

    def __init__(self, config: FedKSeedConfig | None = None, cache: ReplayCache | None = None) -> None:
        """Hyper-parameters (defaults: the reference code's) and the process's replay cache."""
        self.config = config or FedKSeedConfig()
        self.cache = cache or _CACHE
        self._base_hashes: dict[tuple[str, int], bytes] = {}
        if self.config.pro:
            self.name = "fedkseed_pro"

    def describe(self) -> str:
        """One line for ``fedledger strategies``."""
        variant = "Pro, importance-sampled seeds" if self.config.pro else "uniform seeds"
        return f"{self.name}: {self.paper} ({variant}, K={self.config.k}, tau={self.config.steps})"

    def server_strategy(self, *, fraction_train: float = 1.0) -> FedKSeed:
        """FedKSeed over Flower's FedAvg sampling."""
        with quiet_flower():
            return FedKSeed(
                self.config,
                fraction_train=fraction_train,
                fraction_evaluate=0.0,
                min_train_nodes=1,
                min_evaluate_nodes=0,
                min_available_nodes=1,
            )

    # ---------------------------------------------------------------- state

    def _base_hash(self, task: Task, seed: int) -> bytes:
        """keccak256 of theta0's canonical bytes, once per task and seed (the model is large)."""
        from fedledger.server.gateway.blobstore import keccak256

        key = (task.name, seed)
        if key not in self._base_hashes:
            self._base_hashes[key] = keccak256(codec.encode(model_arrays(task.build_model(seed))))
        return self._base_hashes[key]

    def initial_state(self, task: Task, seed: int) -> Arrays:
        """G = 0 over the task's model; the seed root derives from the run seed."""
        base = self._base_hash(task, seed)
        root = int(np.random.default_rng(seed).integers(0, 2**63 - 1))
        return initial_state(base, root, self.config.k, self.config.pro)

    def blank_state(self) -> Arrays:
        """What a node with nothing syncs from."""
        return blank_state(self.config.k, self.config.pro)

    def build(self, task: Task, seed: int, state: Arrays) -> torch.nn.Module:
        """theta0 replayed with G (from the nearest cached state)."""
        if list(state) != list(self.blank_state()) or len(state[GRADS]) != self.config.k:
            raise ValueError(f"not a {self.name} state with K={self.config.k}: {list(state)}")
        if self._base_hash(task, seed) != bytes(state[BASE]):
            raise ValueError("the state's base model is not this task's model (a different pretraining?)")
        return self.cache.model(self._theta0(task, seed), state, self.config.lr, self.config.tune)

    def _theta0(self, task: Task, seed: int) -> torch.nn.Module:
        """The pretrained model with only the tuned parameters trainable (what every step perturbs)."""
        model = task.build_model(seed)
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(tuned(name, self.config.tune))
        return model

    # ------------------------------------------------------------- client

    def client_update(
        self,
        task: Task,
        seed: int,
        state: Arrays,
        data: ClientData,
        settings: TrainSettings,
        private: dict[str, Arrays] | None = None,
    ) -> tuple[Arrays, dict[str, float]]:
        """MeZO steps from the synced model; the update is the (seed index, g) pairs."""
        model = self.build(task, seed, state)
        seeds = candidate_seeds(int(state[ROOT][0]), self.config.k)
        probabilities = seed_probabilities(state[ABS_SUM], state[COUNT]) if self.config.pro else None
        return local_train(model, data, seeds, probabilities, self.config, settings.seed)

    def poison(self, attack: Attack, state: Arrays, update: Arrays, context: PoisonContext | None = None) -> Arrays:
        """The attacks on the update's whole content, its scalar gradients.

        ``scale:F`` / ``sign_flip`` / ``free_ride`` multiply them by F / -1 / 0; ``noise:SIGMA``
        adds Gaussian noise to them. ALIE means nothing here (clients draw different seeds) and is
        refused before a run starts (:attr:`unsupported_attacks`).
        """
        grads = update[GRAD]
        if attack.factor is not None:
            grads = grads * attack.factor
        elif attack.kind == "noise":
            if context is None:
                raise ValueError("the noise attack needs a random generator")
            grads = grads + context.rng.normal(0.0, attack.value, grads.shape)
        return OrderedDict([(INDEX, update[INDEX]), (GRAD, grads.astype(np.float32))])

    # ------------------------------------------------------------- server

    def check_update(self, state: Arrays, update: Arrays) -> None:
        """At most tau finite pairs with seed indices in range of the state's K."""
        check_update(update, len(state[GRADS]), self.config.steps)

    def apply_updates(self, global_arrays: Arrays, weighted: list[tuple[Arrays, float]]) -> Arrays:
        """The state these updates lead to: G + sum(share * their per-seed sums)."""
        state = OrderedDict((name, value.copy()) for name, value in global_arrays.items())
        for update, share in weighted:
            self.check_update(global_arrays, update)
            state[GRADS] = _add(state[GRADS], share * seed_sums(update, len(state[GRADS])))
        return state

    def aggregate(
        self, strategy: object, server_round: int, previous: Arrays, updates: list[tuple[Arrays, int]]
    ) -> Arrays:
        """The FedKSeed rule on the previous state (the same function the Flower strategy uses)."""
        return self.aggregate_offline(previous, updates)

    def aggregate_offline(self, previous: Arrays | None, updates: list[tuple[Arrays, int]]) -> Arrays | None:
        """G plus the weighted pairs; Pro histories updated."""
        if previous is None:
            return None
        for update, _ in updates:
            self.check_update(previous, update)
        return aggregate(previous, updates, equal_weight=self.config.equal_weight, clip=self.config.clip)


plugin = FedKSeedStrategy()
pro_plugin = FedKSeedStrategy(FedKSeedConfig(pro=True))
