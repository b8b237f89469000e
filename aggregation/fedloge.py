"""FedLoGe: joint local and generic federated learning under long-tailed data.

Xiao, Chen, Yang, Zhou, Gao, Wang, Xie, Wu, Chen, Huang, Wu, "FedLoGe: Joint Local and Generic
Federated Learning under Long-tailed Data", ICLR 2024, arXiv:2401.08977; reference code
ZackZikaiXiao/FedLoGe (``fedloge.py``, ``update_weights_gaux``, ``realignment.py``,
``globaltest_calibra``, ``localtest``), read for every detail below; this code is its own.

- SSE-C (:mod:`.ssec`): a frozen sparse simplex ETF, rebuilt from a shared seed, never sent.
- Client, per batch, h = backbone(x): CE(SSE-C(h)) steps the backbone only; CE(g_aux(h.detach()))
  steps the auxiliary global head only; CE(local_head(h.detach())) steps the local head only
  (three SGD optimisers, momentum 0.5, fresh each round; the local head persists on the client).
- Server: FedAvg (by examples) of the backbone and g_aux, which is all a client uploads: the
  global state is the task model's arrays, g_aux being its ``head``. Flower's FedAvg unchanged.
- GLA-FR after training: the generic model's g_aux rows are rescaled to norm 1.7 (bias kept);
  client k's personalised logits are local_head(h) + (g_aux rows times the norms of the local
  head's rows)(h) + g_aux bias, with the classes absent from the client masked out.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)

from fedledger.simulation.tasks import ClientData, Split, Task, TrainSettings, load_arrays, model_arrays
from fedledger.simulation.tasks.base import batches_of, seeded

from .base import Arrays
from .fedavg import FedAvgStrategy
from .ssec import sse_c

LOCAL_HEAD = "fedloge-local-head"
GENERIC_NORM = 1.7
"""The reference's class-wise norm of the realigned generic head (``globaltest_calibra``)."""


class FedLoGeConfig(BaseModel):
    """Hyper-parameters: the reference's CIFAR defaults (lr 0.03, momentum 0.5, 5 local epochs, batch 8)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    beta: float = Field(default=0.6, ge=0, lt=1, description="share of SSE-C entries set to zero")
    ssec_seed: int = Field(default=0, ge=0, description="shared seed of the SSE-C")
    ssec_steps: int = Field(default=10_000, ge=0, description="Adam steps tuning the SSE-C")
    lr: float = Field(default=0.03, gt=0)
    momentum: float = Field(default=0.5, ge=0, lt=1)
    local_epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=8, ge=1)
    mask_absent: bool = Field(default=True, description="personalised: mask classes the client never saw")


def _head(weight: np.ndarray, bias: np.ndarray | None = None) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(weight)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.array(bias)))
    return layer


def realigned_generic(aux_weight: torch.Tensor) -> torch.Tensor:
    """GLA-FR's generic head: each class row rescaled to norm 1.7."""
    return aux_weight * (GENERIC_NORM / torch.norm(aux_weight, dim=1, keepdim=True))


def norm_transfer(aux_weight: torch.Tensor, local_weight: torch.Tensor) -> torch.Tensor:
    """GLA-FR's personalised aux rows: g_aux row c times ||local_head row c||, as the reference does.

    (``update_weights_norm_init``: ``g_aux.weight * norm(l_head.weight, dim=1)``; the rows are not
    normalised first, see docs/fedloge.md.)
    """
    return aux_weight * torch.norm(local_weight, dim=1, keepdim=True)


def personalised_logits(
    features: torch.Tensor,
    aux: torch.nn.Linear,
    local: torch.nn.Linear,
    present: np.ndarray | None = None,
) -> torch.Tensor:
    """local_head(h) + h (norm-transferred g_aux)^T + b_aux, absent classes at -inf when ``present`` given."""
    logits = local(features) + F.linear(features, norm_transfer(aux.weight, local.weight), aux.bias)
    if present is not None:
        logits = logits.masked_fill(torch.from_numpy(~present), float("-inf"))
    return logits


class GenericModel(torch.nn.Module):
    """The generic model of a state: backbone plus realigned g_aux (SSE-C and raw g_aux at hand)."""

    def __init__(self, model: torch.nn.Module, ssec: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.ssec = torch.from_numpy(np.array(ssec))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the realigned generic head."""
        head = self.model.head
        return F.linear(self.model.features(x), realigned_generic(head.weight), head.bias)

    def ssec_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the SSE-C (no bias)."""
        return self.model.features(x) @ self.ssec.T

    def aux_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the raw g_aux."""
        return self.model(x)


class FedLoGeStrategy(FedAvgStrategy):
    """The ``fedloge`` plug-in: FedAvg on the server, FedLoGe's three-loss training and GLA-FR on clients."""

    name = "fedloge"
    paper = "Xiao et al. ICLR 2024, arXiv:2401.08977"
    default_task = "ltdigits"
    default_vote_rule = "share"  # the reference rule is unmeasured on FedLoGe's three-part updates
    bounded_aggregate = False  # FedLoGe's aggregate as published and measured (docs/fedloge.md)

    def __init__(self, config: FedLoGeConfig | None = None) -> None:
        """Hyper-parameters (defaults: the reference's)."""
        self.config = config or FedLoGeConfig()

    def ssec(self, model: torch.nn.Module) -> np.ndarray:
        """The K x d SSE-C for ``model``'s feature size and classes."""
        classes, features = model.head.weight.shape
        return sse_c(features, classes, self.config.beta, self.config.ssec_seed, self.config.ssec_steps)

    def build(self, task: Task, seed: int, state: Arrays) -> torch.nn.Module:
        """The generic model (realigned g_aux) of a state."""
        model = load_arrays(task.build_model(seed), state)
        return GenericModel(model, self.ssec(model)).eval()

    # ----------------------------------------------------------------- client

    def _local_head(self, model: torch.nn.Module, private: dict[str, Arrays], seed: int) -> torch.nn.Linear:
        stored = private.get(LOCAL_HEAD)
        if stored is not None:
            return _head(stored["weight"], stored["bias"])
        classes, features = model.head.weight.shape
        # A client's head starts from its own seed, like the reference's nn.Linear.
        return seeded(int(seed), lambda: torch.nn.Linear(features, classes))

    def client_update(
        self,
        task: Task,
        seed: int,
        state: Arrays,
        data: ClientData,
        settings: TrainSettings,
        private: dict[str, Arrays] | None = None,
    ) -> tuple[Arrays, dict[str, float]]:
        """The three losses per batch; returns backbone + g_aux, keeps the local head in ``private``."""
        if private is None:
            raise ValueError("FedLoGe keeps a local head: the client must provide private storage")
        model = load_arrays(task.build_model(seed), state)
        local = self._local_head(model, private, settings.seed)
        ssec = torch.from_numpy(np.array(self.ssec(model)))
        c = self.config
        backbone_opt = torch.optim.SGD(model.backbone.parameters(), lr=c.lr, momentum=c.momentum)
        aux_opt = torch.optim.SGD(model.head.parameters(), lr=c.lr, momentum=c.momentum)
        local_opt = torch.optim.SGD(local.parameters(), lr=c.lr, momentum=c.momentum)
        x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
        generator = torch.Generator().manual_seed(int(settings.seed))
        model.train()
        totals = {"loss_ssec": 0.0, "loss_aux": 0.0, "loss_local": 0.0}
        batches = 0
        for _ in range(c.local_epochs):
            for batch in batches_of(len(y), c.batch_size, generator, min_size=2):
                for optimizer in (backbone_opt, aux_opt, local_opt):
                    optimizer.zero_grad()
                features = model.features(x[batch])
                loss_ssec = F.cross_entropy(features @ ssec.T, y[batch])
                loss_ssec.backward()
                backbone_opt.step()
                loss_aux = F.cross_entropy(model.head(features.detach()), y[batch])
                loss_aux.backward()
                aux_opt.step()
                loss_local = F.cross_entropy(local(features.detach()), y[batch])
                loss_local.backward()
                local_opt.step()
                for key, loss in zip(totals, (loss_ssec, loss_aux, loss_local), strict=True):
                    totals[key] += loss.item()
                batches += 1
        model.eval()
        private[LOCAL_HEAD] = OrderedDict(
            (name, value.detach().numpy().copy()) for name, value in local.state_dict().items()
        )
        return model_arrays(model), {key: value / max(batches, 1) for key, value in totals.items()}

    def client_report(
        self, task: Task, seed: int, state: Arrays, data: ClientData, private: dict[str, Arrays] | None = None
    ) -> dict[str, float]:
        """Personalised accuracy (GLA-FR) on the client's local test set."""
        if data.test is None or len(data.test) == 0:
            return {}
        model = load_arrays(task.build_model(seed), state).eval()
        local = self._local_head(model, private or {}, seed)
        present = (
            np.bincount(data.train.y, minlength=model.head.weight.shape[0]) > 0 if self.config.mask_absent else None
        )
        with torch.no_grad():
            logits = personalised_logits(model.features(torch.from_numpy(data.test.x)), model.head, local, present)
            accuracy = float((logits.argmax(dim=1).numpy() == data.test.y).mean())
        return {"personalized_accuracy": accuracy}

    # ----------------------------------------------------------------- server

    def extra_metrics(self, task: Task, model: torch.nn.Module, data: Split) -> dict[str, float]:
        """Generic accuracy through the SSE-C and through the raw g_aux (``accuracy`` is the realigned one)."""
        assert isinstance(model, GenericModel)
        x = torch.from_numpy(data.x)
        with torch.no_grad():
            ssec = model.ssec_logits(x).argmax(dim=1).numpy()
            aux = model.aux_logits(x).argmax(dim=1).numpy()
        return {"accuracy_ssec": float((ssec == data.y).mean()), "accuracy_aux": float((aux == data.y).mean())}


plugin = FedLoGeStrategy()
