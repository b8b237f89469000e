"""A tiny one-stage grid detector (YOLO-like, one anchor per cell) and its targets, losses and decoding.

The output has 5 + C channels per cell of a GRID x GRID map: objectness, tx, ty, tw, th and
class logits. A box's centre is (column + sigmoid(tx)) * CELL, its width ANCHOR * exp(tw).
An object is assigned to the cell holding its centre (the canvases never put two there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)

from .glyphs import CANVAS, CELL

GRID = CANVAS // CELL
ANCHOR = 16.0
BOX_WEIGHT = 5.0


def _conv(cin: int, cout: int, stride: int) -> list[torch.nn.Module]:
    return [torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1), torch.nn.ReLU()]


class TinyDetector(torch.nn.Module):
    """Backbone (48 -> 12), neck (12 -> 6) and a 1x1 head: 98,127 parameters (10 classes)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = torch.nn.Sequential(*_conv(1, 16, 1), *_conv(16, 32, 2), *_conv(32, 64, 2))
        self.neck = torch.nn.Sequential(*_conv(64, 64, 2), *_conv(64, 64, 1))
        self.head = torch.nn.Conv2d(64, 5 + num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, GRID * GRID, 5 + C), cells in row-major order."""
        out = self.head(self.neck(self.backbone(x)))
        return out.flatten(2).transpose(1, 2)


@dataclass(frozen=True)
class Targets:
    """What the loss compares each cell with.

    ``objectness`` (N, G*G) in [0, 1] everywhere; ``boxes`` (N, G*G, 4) as (cx, cy, w, h) in
    pixels and ``classes`` (N, G*G) only where ``assigned`` (N, G*G) is True.
    """

    objectness: torch.Tensor
    assigned: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor

    @classmethod
    def background(cls, n: int) -> Targets:
        """Targets of ``n`` images with no object anywhere (every objectness 0)."""
        cells = GRID * GRID
        return cls(
            torch.zeros(n, cells),
            torch.zeros(n, cells, dtype=torch.bool),
            torch.zeros(n, cells, 4),
            torch.zeros(n, cells, dtype=torch.long),
        )

    def assign(self, image: int, cls: int, x1: float, y1: float, x2: float, y2: float) -> None:
        """Make the cell holding the box's centre supervise that box and class (objectness 1)."""
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cell = cell_of(cx, cy)
        self.objectness[image, cell] = 1.0
        self.assigned[image, cell] = True
        self.boxes[image, cell] = torch.tensor([cx, cy, x2 - x1, y2 - y1])
        self.classes[image, cell] = int(cls)

    def select(self, index: torch.Tensor) -> Targets:
        """The targets of the images at ``index``."""
        return Targets(self.objectness[index], self.assigned[index], self.boxes[index], self.classes[index])


def cell_of(cx: float, cy: float) -> int:
    """The row-major index of the cell holding a point."""
    column = min(max(int(cx // CELL), 0), GRID - 1)
    row = min(max(int(cy // CELL), 0), GRID - 1)
    return row * GRID + column


def targets_from_boxes(rows: np.ndarray) -> Targets:
    """Supervised targets from box rows (N, K, 5) of (class, x1, y1, x2, y2); class -1 is padding."""
    targets = Targets.background(len(rows))
    for i, image in enumerate(rows):
        for cls, x1, y1, x2, y2 in image:
            if cls >= 0:
                targets.assign(i, int(cls), x1, y1, x2, y2)
    return targets


def _cell_origins() -> torch.Tensor:
    index = torch.arange(GRID * GRID)
    return torch.stack([(index % GRID).float(), (index // GRID).float()], dim=1)


def detection_loss(output: torch.Tensor, targets: Targets) -> torch.Tensor:
    """Objectness BCE over every cell + box L1 and class CE over assigned cells, summed per image."""
    n = output.shape[0]
    loss = F.binary_cross_entropy_with_logits(output[..., 0], targets.objectness, reduction="sum")
    if targets.assigned.any():
        chosen = output[targets.assigned]
        truth = targets.boxes[targets.assigned]
        origin = _cell_origins().expand(n, -1, -1)[targets.assigned]
        offset_target = (truth[:, :2] / CELL - origin).clamp(1e-4, 1 - 1e-4)
        size_target = torch.log(truth[:, 2:].clamp(min=1.0) / ANCHOR)
        predicted = torch.cat([torch.sigmoid(chosen[:, 1:3]), chosen[:, 3:5]], dim=1)
        loss = loss + BOX_WEIGHT * F.l1_loss(predicted, torch.cat([offset_target, size_target], dim=1), reduction="sum")
        loss = loss + F.cross_entropy(chosen[:, 5:], targets.classes[targets.assigned], reduction="sum")
    return loss / n


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes (M, 4) as (x1, y1, x2, y2), scores (M,), classes (M,)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def decode(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per cell: boxes (N, G*G, 4) as (x1, y1, x2, y2), scores objectness x best class prob, best classes."""
    origin = _cell_origins()
    centre = (origin + torch.sigmoid(output[..., 1:3])) * CELL
    size = ANCHOR * torch.exp(output[..., 3:5].clamp(max=4.0))
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    probabilities = torch.softmax(output[..., 5:], dim=-1)
    best, classes = probabilities.max(dim=-1)
    return boxes, torch.sigmoid(output[..., 0]) * best, classes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (M, 4) with every box in ``b`` (K, 4), (x1, y1, x2, y2)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    overlaps = box_iou(boxes, boxes)
    keep: list[int] = []
    for i in order:
        if all(classes[j] != classes[i] or overlaps[i, j] <= iou for j in keep):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)


def detect(output: torch.Tensor, conf: float, iou: float) -> list[Detections]:
    """Each image's detections scoring at least ``conf``, after NMS at ``iou``, best score first."""
    boxes, scores, classes = (t.detach().numpy() for t in decode(output))
    found = []
    for b, s, c in zip(boxes, scores, classes, strict=True):
        above = np.flatnonzero(s >= conf)
        kept = above[nms(b[above], s[above], c[above], iou)] if len(above) else above
        found.append(Detections(b[kept].astype(np.float32), s[kept].astype(np.float32), c[kept].astype(np.int64)))
    return found
