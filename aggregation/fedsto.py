"""FedSTO: semi-supervised federated object detection with selective training and orthogonal enhancement.

Kim, Kim, Jang, Yoon, Ha, "Navigating Data Heterogeneity in Federated Learning: A
Semi-Supervised Federated Object Detection", NeurIPS 2023, arXiv:2310.17097. Labels live only
at the server; clients hold unlabeled images of shifted domains. The official repository
(Kthyeon/ssfod) has data scripts only: this follows the paper and the Efficient Teacher
pseudo-label conventions it builds on (:mod:`.teacher`). docs/fedsto.md lists every detail the
paper leaves open and what was chosen.

- Warm-up (:meth:`FedSTOStrategy.initial_state`): supervised training on the server's labels.
- Phase 1, rounds 1..T1 (selective training): a client trains the backbone only, on strongly
  augmented images, against its local EMA teacher's pseudo labels of weakly augmented ones,
  and uploads the backbone only. The server averages the backbones (by examples), keeps its
  neck and head, then trains the whole model one step on its labeled data.
- Phase 2 (orthogonally enhanced full-parameter training): the same with every parameter
  trained and uploaded, and lambda * SRIP (:mod:`.srip`) added to the loss on clients and server.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from fedledger import codec
from fedledger.simulation.cache import build_once, cache_dir
from fedledger.simulation.detection import GRID, detection_loss
from fedledger.simulation.glyphs import jitter
from fedledger.simulation.tasks import ClientData, Split, Task, TrainSettings, load_arrays, model_arrays
from fedledger.simulation.tasks.base import batches_of, derived_seed
from fedledger.simulation.tasks.detdigits import DetDigitsTask, fit_supervised

from .base import Arrays
from .fedavg import FedAvgStrategy
from .srip import srip
from .teacher import NMS_IOU, RELIABLE, UNCERTAIN, ema_update, pseudo_targets

TEACHER = "fedsto-teacher"
BACKBONE = "backbone."


class FedSTOConfig(BaseModel):
    """Hyper-parameters; ``selective_rounds=0, srip_weight=0`` is naive semi-supervised FedAvg."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    selective_rounds: int = Field(default=4, ge=0, description="T1: rounds of phase 1 (backbone only)")
    warmup_epochs: int = Field(default=60, ge=0, description="server's supervised epochs before round 1")
    server_epochs: int = Field(default=1, ge=0, description="server's supervised epochs after each aggregation")
    local_epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0, description="Adam learning rate (clients and server)")
    ema_decay: float = Field(default=0.99, ge=0, le=1, description="local EMA teacher decay per step")
    reliable: float = Field(default=RELIABLE, ge=0, le=1)
    uncertain: float = Field(default=UNCERTAIN, ge=0, le=1)
    nms_iou: float = Field(default=NMS_IOU, gt=0, le=1)
    soft_target: Literal["objectness", "score"] = Field(
        default="objectness", description="an uncertain box's soft objectness target"
    )
    unsup_weight: float = Field(default=3.0, ge=0, description="weight of the pseudo-label loss")
    srip_weight: float = Field(default=1e-3, ge=0, description="lambda of SRIP in phase 2")
    srip_scope: Literal["all", "neck_head"] = Field(
        default="all", description="the weights SRIP constrains: every conv and linear one, or the neck's and head's"
    )
    teacher_reset: bool = Field(
        default=True, description="start each round's local EMA teacher from the received global model"
    )
    server_augment: Literal["weak", "strong"] = Field(
        default="weak", description="the photometric augmentation of the server's supervised steps (and warm-up)"
    )

    @property
    def strong_server_augment(self) -> bool:
        """Whether the server's supervised steps use the strong augmentation."""
        return self.server_augment == "strong"


def _detection_task(task: Task) -> DetDigitsTask:
    if not isinstance(task, DetDigitsTask):
        raise ValueError(f"fedsto trains detectors: it needs the detdigits task, got {task.name!r}")
    return task


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Single-threaded torch: the server's steps must give the same bytes in every process."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def weighted_mean(updates: list[tuple[Arrays, int]], names: list[str]) -> Arrays:
    """FedAvg of each named array over the updates that carry it, weighted by their example counts."""
    merged: Arrays = OrderedDict()
    for name in names:
        carriers = [(u[name], n) for u, n in updates if name in u]
        if not carriers:
            continue
        total = sum(n for _, n in carriers)
        mean = sum(value.astype(np.float64) * (n / total) for value, n in carriers)
        merged[name] = np.asarray(mean).astype(carriers[0][0].dtype)
    return merged


class FedSTOStrategy(FedAvgStrategy):
    """The ``fedsto`` plug-in: selective then orthogonally enhanced semi-supervised FedAvg of a detector."""

    name = "fedsto"
    paper = "Kim et al. NeurIPS 2023, arXiv:2310.17097"
    default_task = "detdigits"
    aggregates_from_previous = True
    semi_supervised = True
    default_vote_rule = "share"  # label-free voting (``judge``); the reference rule is unmeasured here
    bounded_aggregate = False  # FedSTO's aggregate as published and measured (docs/fedsto.md)

    def __init__(self, config: FedSTOConfig | None = None) -> None:
        """Hyper-parameters (defaults: docs/fedsto.md)."""
        self.config = config or FedSTOConfig()

    def phase(self, server_round: int) -> int:
        """1 (selective training) for rounds 1..T1, then 2."""
        return 1 if server_round <= self.config.selective_rounds else 2

    def _regulariser(self, phase: int) -> Callable[[torch.nn.Module], torch.Tensor] | None:
        weight = self.config.srip_weight
        scope = ("neck", "head") if self.config.srip_scope == "neck_head" else ()
        return (lambda model: weight * srip(model, scope=scope)) if phase == 2 and weight > 0 else None

    # ------------------------------------------------------------------ state

    def initial_state(self, task: Task, seed: int) -> Arrays:
        """The warm-up model: supervised training on the server's labels (cached on disk, deterministic)."""
        detection = _detection_task(task)
        c = self.config
        augment = "-strong" if c.strong_server_augment else ""
        name = f"warmup-{task.name}-{seed}-{c.warmup_epochs}-{c.lr}-{c.batch_size}{augment}.bin"
        path = cache_dir() / "fedsto" / name

        def build(tmp: object) -> None:
            model = detection.build_model(seed)
            settings = TrainSettings(local_epochs=c.warmup_epochs, lr=c.lr, batch_size=c.batch_size, seed=seed)
            if c.warmup_epochs:
                with _one_thread():
                    fit_supervised(model, detection.server_data(seed), settings, strong=c.strong_server_augment)
            tmp.write_bytes(codec.encode(model_arrays(model)))  # type: ignore[attr-defined]

        build_once(path, build)
        return codec.decode(path.read_bytes())

    # ----------------------------------------------------------------- client

    def client_update(
        self,
        task: Task,
        seed: int,
        state: Arrays,
        data: ClientData,
        settings: TrainSettings,
        private: dict[str, Arrays] | None = None,
    ) -> tuple[Arrays, dict[str, float]]:
        """Train against the EMA teacher's pseudo labels; upload the backbone (phase 1) or everything."""
        detection = _detection_task(task)
        if private is None:
            raise ValueError("FedSTO keeps a local EMA teacher: the client must provide private storage")
        c = self.config
        phase = self.phase(settings.round)
        student = load_arrays(detection.build_model(seed), state)
        kept = None if c.teacher_reset else private.get(TEACHER)
        teacher = load_arrays(detection.build_model(seed), kept or state).eval()
        trained = student.backbone.parameters() if phase == 1 else student.parameters()
        optimizer = torch.optim.Adam(trained, lr=c.lr)
        regulariser = self._regulariser(phase)
        generator = torch.Generator().manual_seed(int(settings.seed))
        x = torch.from_numpy(data.train.x)
        totals = {"loss_unsup": 0.0, "reliable": 0.0, "uncertain": 0.0}
        steps = 0
        student.train()
        for _ in range(c.local_epochs):
            for batch in batches_of(len(x), c.batch_size, generator):
                with torch.no_grad():
                    teacher_output = teacher(jitter(x[batch], generator))
                targets, counts = pseudo_targets(teacher_output, c.reliable, c.uncertain, c.nms_iou, c.soft_target)
                optimizer.zero_grad()
                loss = c.unsup_weight * detection_loss(student(jitter(x[batch], generator, strong=True)), targets)
                totals["loss_unsup"] += loss.item()
                if regulariser is not None:
                    loss = loss + regulariser(student)
                loss.backward()
                optimizer.step()
                ema_update(teacher, student, c.ema_decay)
                totals["reliable"] += counts["reliable"]
                totals["uncertain"] += counts["uncertain"]
                steps += 1
        student.eval()
        private[TEACHER] = model_arrays(teacher)
        arrays = model_arrays(student)
        if phase == 1:
            arrays = OrderedDict((k, v) for k, v in arrays.items() if k.startswith(BACKBONE))
        return arrays, {key: value / max(steps, 1) for key, value in totals.items()} | {"phase": float(phase)}

    # ----------------------------------------------------------------- voting

    def judge(
        self, task: Task, seed: int, state: Arrays, data: Split, private: dict[str, Arrays] | None = None
    ) -> Callable[[torch.nn.Module], float]:
        """exp(-pseudo-label loss per grid cell) on the voter's unlabeled images.

        The reference is the voter's EMA teacher (its global state when it never trained): its
        pseudo labels on the voter's own images, bucketed as in training. The score is the
        geometric-mean likelihood per cell a model gives them: continuous, and near 0 for a
        corrupted model.
        """
        detection = _detection_task(task)
        teacher = load_arrays(detection.build_model(seed), (private or {}).get(TEACHER) or state).eval()
        x = torch.from_numpy(data.x)
        with torch.no_grad():
            c = self.config
            targets, _ = pseudo_targets(teacher(x), c.reliable, c.uncertain, c.nms_iou, c.soft_target)

        def score(model: torch.nn.Module) -> float:
            model.eval()
            with torch.no_grad():
                loss = float(detection_loss(model(x), targets)) / (GRID * GRID)
            return math.exp(-loss) if math.isfinite(loss) else 0.0

        return score

    # ----------------------------------------------------------------- server

    def check_update(self, state: Arrays, update: Arrays) -> None:
        """A backbone-only update (phase 1) or a whole model, every array finite and shaped as the state's."""
        backbone = [k for k in state if k.startswith(BACKBONE)]
        if list(update) not in (backbone, list(state)):
            raise ValueError("a FedSTO update carries the backbone's arrays or the whole model's")
        for name, value in update.items():
            if value.shape != state[name].shape or value.dtype != state[name].dtype:
                raise ValueError(
                    f"array {name} is {value.dtype}{value.shape}, expected {state[name].dtype}{state[name].shape}"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"array {name} is not finite")

    def aggregate(
        self, strategy: object, server_round: int, previous: Arrays, updates: list[tuple[Arrays, int]]
    ) -> Arrays:
        """FedAvg of the round's arrays (the backbone only in phase 1) over the updates, on ``previous``.

        Per array over the updates that carry it (Flower's FedAvg when all carry the same, which
        honest clients do); in phase 1 anything but the backbone is ignored, so one client
        cannot replace the neck or head alone.
        """
        for update, _ in updates:
            self.check_update(previous, update)
        names = [k for k in previous if self.phase(server_round) == 2 or k.startswith(BACKBONE)]
        return previous | weighted_mean(updates, names)

    def aggregate_offline(self, previous: Arrays | None, updates: list[tuple[Arrays, int]]) -> Arrays | None:
        """None: the server's supervised step uses labels only the coordinator holds."""
        return None

    def server_update(self, task: Task, seed: int, server_round: int, state: Arrays) -> Arrays:
        """One supervised step (``server_epochs``) on the server's labeled data; + lambda SRIP in phase 2."""
        detection = _detection_task(task)
        c = self.config
        if c.server_epochs == 0:
            return state
        model = load_arrays(detection.build_model(seed), state)
        settings = TrainSettings(
            local_epochs=c.server_epochs,
            lr=c.lr,
            batch_size=c.batch_size,
            seed=derived_seed("server", seed, server_round),
        )
        with _one_thread():
            fit_supervised(
                model,
                detection.server_data(seed),
                settings,
                self._regulariser(self.phase(server_round)),
                strong=c.strong_server_augment,
            )
        return model_arrays(model)


plugin = FedSTOStrategy()
