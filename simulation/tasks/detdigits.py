"""Digit detection under domain shift: FedSTO's setting on generated canvases (:mod:`..glyphs`).

The server holds SERVER_CANVASES labeled ``clear`` canvases; client k holds CLIENT_CANVASES
*unlabeled* canvases of domain CLIENT_DOMAINS[k % 3] (plus VAL_CANVASES unlabeled ones it
votes with); the test set has TEST_CANVASES labeled canvases per domain. Server, client and
test canvases draw on disjoint thirds of scikit-learn's digits. The headline metric
(``accuracy`` in reports) is mAP@0.5 averaged over the client domains.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..detection import Targets, TinyDetector, detect, detection_loss, targets_from_boxes
from ..glyphs import CLIENT_DOMAINS, DOMAINS, MAX_OBJECTS, canvases, jitter
from ..mean_ap import mean_ap
from .base import ClientData, Split, Task, TrainSettings, batches_of, seeded
from .digits import load_digits

SERVER_CANVASES = 400
CLIENT_CANVASES = 400
VAL_CANVASES = 100
TEST_CANVASES = 150
EVAL_CONF, EVAL_IOU = 0.001, 0.6
"""Detections kept for mAP (YOLOv5's validation settings: score >= 0.001, NMS IoU 0.6)."""


@dataclass(frozen=True)
class DetectionSplit(Split):
    """Canvases ``x`` (N, 1, H, W), box rows ``y`` (N, MAX_OBJECTS, 5) and each canvas's domain index."""

    domain: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @functools.cached_property
    def targets(self) -> Targets:
        """The detector's per-cell targets of the boxes (computed once per split)."""
        return targets_from_boxes(self.y)

    @property
    def labeled(self) -> bool:
        """Whether any canvas carries a box (client canvases carry none)."""
        return bool((self.y[:, :, 0] >= 0).any())


@functools.cache
def _glyphs(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(glyphs, labels) for the server, the clients and the test set: disjoint thirds of the digits."""
    x, y = load_digits()
    glyphs = (x / 16.0).reshape(-1, 8, 8).astype(np.float32)
    order = np.random.default_rng(seed + 7).permutation(len(y))
    parts = np.array_split(order, 3)
    return tuple((glyphs[p], y[p].astype(np.int64)) for p in parts)


def _split(x: np.ndarray, y: np.ndarray, domain: int) -> DetectionSplit:
    return DetectionSplit(x, y, np.full(len(x), domain, dtype=np.int64))


def unlabeled(split: DetectionSplit) -> DetectionSplit:
    """The same canvases without their boxes."""
    y = np.zeros_like(split.y)
    y[:, :, 0] = -1
    return DetectionSplit(split.x, y, split.domain)


class DetDigitsTask(Task):
    """1 to 3 digits per 48x48 canvas, a tiny grid detector, mAP@0.5 per domain."""

    name = "detdigits"
    num_classes = 10
    labeled_clients = False

    def build_model(self, seed: int) -> torch.nn.Module:
        """The detector, initialised from ``seed``."""
        return seeded(seed, lambda: TinyDetector(self.num_classes))

    @staticmethod
    def domain_of(partition_id: int) -> str:
        """The client domain of a partition."""
        return CLIENT_DOMAINS[partition_id % len(CLIENT_DOMAINS)]

    @functools.cache  # noqa: B019 (tasks are long-lived singletons per process)
    def labeled_client_data(self, partition_id: int, seed: int) -> tuple[DetectionSplit, DetectionSplit]:
        """Client ``partition_id``'s canvases *with* their boxes: only for the supervised upper bound."""
        glyphs, labels = _glyphs(seed)[1]
        domain = self.domain_of(partition_id)
        x, y = canvases(glyphs, labels, CLIENT_CANVASES + VAL_CANVASES, domain, seed * 1_000 + 100 + partition_id)
        index = DOMAINS.index(domain)
        n = CLIENT_CANVASES
        return _split(x[:n], y[:n], index), _split(x[n:], y[n:], index)

    def client_data(self, partition_id: int, num_partitions: int, partitioning: str, seed: int) -> ClientData:
        """Client ``partition_id``'s unlabeled canvases of its domain (training and voting)."""
        if not 0 <= partition_id < num_partitions:
            raise ValueError(f"partition {partition_id} out of range for {num_partitions} partitions")
        if partitioning != "iid":
            raise ValueError(f"{self.name} deals domains, not labels: its partitioning is iid, got {partitioning!r}")
        train, val = self.labeled_client_data(partition_id, seed)
        return ClientData(unlabeled(train), unlabeled(val))

    @functools.cache  # noqa: B019
    def server_data(self, seed: int) -> DetectionSplit:
        """The server's labeled ``clear`` canvases."""
        glyphs, labels = _glyphs(seed)[0]
        return _split(*canvases(glyphs, labels, SERVER_CANVASES, "clear", seed * 1_000 + 1), 0)

    @functools.cache  # noqa: B019
    def test_data(self, seed: int) -> DetectionSplit:
        """TEST_CANVASES labeled canvases of every domain."""
        glyphs, labels = _glyphs(seed)[2]
        parts = [canvases(glyphs, labels, TEST_CANVASES, d, seed * 1_000 + 500 + i) for i, d in enumerate(DOMAINS)]
        return DetectionSplit(
            np.concatenate([x for x, _ in parts]),
            np.concatenate([y for _, y in parts]),
            np.repeat(np.arange(len(DOMAINS)), TEST_CANVASES),
        )

    def fit(self, model: torch.nn.Module, data: Split, settings: TrainSettings) -> dict[str, float]:
        """Supervised training (Adam, weak photometric jitter) on labeled canvases."""
        if not isinstance(data, DetectionSplit) or not data.labeled:
            raise ValueError(f"{self.name} clients hold no labels: train them with a semi-supervised strategy (fedsto)")
        return fit_supervised(model, data, settings)

    def evaluate(self, model: torch.nn.Module, data: Split) -> dict[str, float]:
        """mAP@0.5 per domain, its mean over the client domains (``map50`` = ``accuracy``) and the loss."""
        if not isinstance(data, DetectionSplit):
            raise ValueError(f"{self.name} evaluates DetectionSplit data")
        model.eval()
        with torch.no_grad():
            output = model(torch.from_numpy(data.x))
            loss = float(detection_loss(output, data.targets))
        found = detect(output, EVAL_CONF, EVAL_IOU)
        metrics: dict[str, float] = {"loss": loss}
        for index, domain in enumerate(DOMAINS):
            picked = np.flatnonzero(data.domain == index)
            if len(picked):
                metrics[f"map50_{domain}"] = mean_ap([found[i] for i in picked], list(data.y[picked]), self.num_classes)
        client = [metrics[f"map50_{d}"] for d in CLIENT_DOMAINS if f"map50_{d}" in metrics]
        headline = float(np.mean(client)) if client else mean_ap(found, list(data.y), self.num_classes)
        return metrics | {"map50": headline, "accuracy": headline}


def fit_supervised(
    model: torch.nn.Module,
    data: DetectionSplit,
    settings: TrainSettings,
    regulariser: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    *,
    strong: bool = False,
) -> dict[str, float]:
    """Adam on the detection loss (plus ``regulariser(model)`` if given) for ``local_epochs``; deterministic.

    ``strong``: the strong photometric augmentation (:func:`..glyphs.jitter`) instead of the weak one.
    """
    generator = torch.Generator().manual_seed(int(settings.seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    x = torch.from_numpy(data.x)
    targets = data.targets
    model.train()
    total, batches = 0.0, 0
    for _ in range(settings.local_epochs):
        for batch in batches_of(len(x), settings.batch_size, generator):
            optimizer.zero_grad()
            loss = detection_loss(model(jitter(x[batch], generator, strong=strong)), targets.select(batch))
            if regulariser is not None:
                loss = loss + regulariser(model)
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
    model.eval()
    return {"train_loss": total / max(batches, 1)}


__all__ = ["MAX_OBJECTS", "DetDigitsTask", "DetectionSplit", "fit_supervised", "unlabeled"]
