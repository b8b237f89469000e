"""Detection canvases: scikit-learn digit glyphs scaled onto a blank canvas, with exact boxes and domain shifts.

A canvas is CANVAS x CANVAS pixels in [0, 1] carrying 1 to MAX_OBJECTS glyphs of 12 to 20
pixels that neither overlap nor share a detector grid cell. A box is (class, x1, y1, x2, y2)
in pixels, x2/y2 exclusive, around the glyph's ink; unused rows are (-1, 0, 0, 0, 0).

The domains mimic the weather shift of FedSTO's BDD100K split: ``clear`` (the server's
labeled data) and three client domains, each a photometric corruption: ``low_contrast``
(fog), ``streaks`` (rain: bright diagonal streaks plus noise) and ``salt`` (snow: salt
noise plus brightening).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 (the PyTorch convention)

CANVAS = 48
CELL = 8
MAX_OBJECTS = 3
MIN_SIZE, MAX_SIZE = 12, 20
DOMAINS = ("clear", "low_contrast", "streaks", "salt")
CLIENT_DOMAINS = DOMAINS[1:]
INK = 0.1
"""A scaled glyph pixel above this is ink: the box is the ink's bounding box."""


def scaled_glyph(glyph: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 glyph (values in [0, 1]) resized to ``size`` x ``size`` bilinearly."""
    tensor = torch.from_numpy(np.asarray(glyph, dtype=np.float32).reshape(1, 1, 8, 8))
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _ink_box(patch: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((patch > INK).any(axis=1))
    cols = np.flatnonzero((patch > INK).any(axis=0))
    return x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1


def _free(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    x1, y1, x2, y2 = box
    cell = ((x1 + x2) // 2 // CELL, (y1 + y2) // 2 // CELL)
    for a1, b1, a2, b2 in placed:
        if x1 < a2 + 1 and a1 < x2 + 1 and y1 < b2 + 1 and b1 < y2 + 1:
            return False  # overlapping, or touching
        if cell == ((a1 + a2) // 2 // CELL, (b1 + b2) // 2 // CELL):
            return False  # one grid cell predicts one object
    return True


def compose(
    glyphs: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A clear canvas with ``count`` glyphs drawn from ``glyphs``/``labels``, and its box rows."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    boxes = np.full((MAX_OBJECTS, 5), 0.0, dtype=np.float32)
    boxes[:, 0] = -1
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(200):
        if len(placed) == count:
            break
        index = int(rng.integers(len(labels)))
        size = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
        x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
        patch = scaled_glyph(glyphs[index], size)
        box = _ink_box(patch, x, y)
        if not _free(box, placed):
            continue
        canvas[y : y + size, x : x + size] = np.maximum(canvas[y : y + size, x : x + size], patch)
        boxes[len(placed)] = (labels[index], *box)
        placed.append(box)
    return canvas, boxes


def shift(canvas: np.ndarray, domain: str, rng: np.random.Generator) -> np.ndarray:
    """``canvas`` as seen in ``domain``."""
    if domain == "clear":
        out = canvas + rng.normal(0, 0.02, canvas.shape)
    elif domain == "low_contrast":
        out = 0.3 + 0.45 * canvas + rng.normal(0, 0.04, canvas.shape)
    elif domain == "streaks":
        out = canvas.copy()
        yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
        for _ in range(int(rng.integers(3, 7))):
            offset, slope = rng.uniform(-CANVAS, CANVAS), rng.uniform(1.5, 3.0)
            streak = np.abs(yy - slope * (xx - offset) / 2.0) < 0.8
            out = np.where(streak, np.maximum(out, rng.uniform(0.4, 0.7)), out)
        out = out + rng.normal(0, 0.08, canvas.shape)
    elif domain == "salt":
        out = 0.2 + 0.8 * canvas
        out = np.where(rng.random(canvas.shape) < 0.04, 1.0, out)
    else:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def canvases(glyphs: np.ndarray, labels: np.ndarray, n: int, domain: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` canvases of ``domain`` (N, 1, CANVAS, CANVAS) and their boxes (N, MAX_OBJECTS, 5); deterministic."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 1, CANVAS, CANVAS), dtype=np.float32)
    y = np.empty((n, MAX_OBJECTS, 5), dtype=np.float32)
    for i in range(n):
        canvas, boxes = compose(glyphs, labels, int(rng.integers(1, MAX_OBJECTS + 1)), rng)
        x[i, 0] = shift(canvas, domain, rng)
        y[i] = boxes
    return x, y


def jitter(x: torch.Tensor, generator: torch.Generator, *, strong: bool = False) -> torch.Tensor:
    """Photometric augmentation that keeps every box where it is.

    Weak (supervised training): contrast x0.8-1.2, brightness +-0.1, noise sigma 0.03. Strong (the
    student's view of pseudo-labelled images): contrast x0.4-1.4, brightness +-0.25, noise sigma
    up to 0.1 and one 8x8 cutout per image filled with a random grey.
    """
    n = x.shape[0]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    contrast, brightness, sigma = ((0.4, 1.4), 0.25, 0.1) if strong else ((0.8, 1.2), 0.1, 0.03)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    out = (x - mean) * uniform(*contrast, 1, 1, 1) + mean + uniform(-brightness, brightness, 1, 1, 1)
    out = out + torch.randn(x.shape, generator=generator) * (uniform(0, sigma, 1, 1, 1) if strong else sigma)
    if strong:
        corners = torch.randint(0, CANVAS - 8, (n, 2), generator=generator)
        grey = torch.rand(n, generator=generator)
        for i in range(n):
            row, column = int(corners[i, 0]), int(corners[i, 1])
            out[i, :, row : row + 8, column : column + 8] = grey[i]
    return out.clamp(0.0, 1.0)
