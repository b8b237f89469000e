"""MeZO's two-point zeroth-order step and its replay from (seed, scalar gradient) pairs.

Malladi et al., "Fine-Tuning Language Models with Just Forward Passes", NeurIPS 2023
(arXiv:2305.17333), as FedKSeed uses it (arXiv:2312.06353, reference code zhenqincn/FedKSeed):
a seed fixes the perturbation z ~ N(0, I) of every trainable parameter, drawn in
``named_parameters`` order from a torch generator seeded with it, so a step is fully described
by its seed and one scalar, the projected gradient g = (L(theta + eps z) - L(theta - eps z)) / (2 eps),
and the update is theta <- theta - lr * g * z.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch


def trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters a step perturbs, in the fixed order every party uses."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def perturbation(params: list[tuple[str, torch.nn.Parameter]], seed: int) -> list[torch.Tensor]:
    """Z for ``seed``: one standard normal draw per parameter, in order, from one generator."""
    generator = torch.Generator().manual_seed(int(seed))
    return [torch.normal(0.0, 1.0, size=tuple(p.shape), generator=generator, dtype=p.dtype) for _, p in params]


@dataclass(frozen=True)
class Step:
    """The outcome of one zeroth-order step."""

    seed: int
    grad: float | None
    """The projected gradient, or None when the step was skipped (a NaN loss, or clipped)."""
    loss: float


def zo_step(
    model: torch.nn.Module,
    loss_of: Callable[[torch.nn.Module], torch.Tensor],
    seed: int,
    *,
    eps: float,
    lr: float,
    grad_clip: float = 0.0,
) -> Step:
    """One MeZO step on ``model`` in place: two forward passes at theta +- eps z, then theta -= lr g z.

    theta is restored from a copy after the two evaluations (bit-exact, unlike adding eps z back).
    A NaN loss skips the step; so does |L+ - L-| > ``grad_clip`` when ``grad_clip`` > 0, as in the
    reference code.
    """
    params = trainable(model)
    z = perturbation(params, seed)
    saved = [p.data.clone() for _, p in params]
    with torch.no_grad():
        for (_, p), zi in zip(params, z, strict=True):
            p.data = p.data + eps * zi
        loss_plus = loss_of(model)
        for (_, p), original, zi in zip(params, saved, z, strict=True):
            p.data = original - eps * zi
        loss_minus = loss_of(model)
        for (_, p), original in zip(params, saved, strict=True):
            p.data = original
    if torch.isnan(loss_plus) or torch.isnan(loss_minus):
        return Step(seed, None, float(loss_plus))
    if grad_clip > 0 and torch.abs(loss_plus - loss_minus) > grad_clip:
        return Step(seed, None, float(loss_plus))
    grad = ((loss_plus - loss_minus) / (2 * eps)).item()
    with torch.no_grad():
        for (_, p), zi in zip(params, z, strict=True):
            p.data = p.data - lr * (grad * zi)
    return Step(seed, grad, float(loss_plus))


def replay(model: torch.nn.Module, pairs: Iterable[tuple[int, float]], lr: float) -> torch.nn.Module:
    """Apply theta <- theta - lr * g * z(seed) for each (seed, g) in order, in the parameters' dtype."""
    params = trainable(model)
    with torch.no_grad():
        for seed, grad in pairs:
            if grad == 0.0:
                continue
            for (_, p), zi in zip(params, perturbation(params, seed), strict=True):
                p.data = p.data - lr * (grad * zi)
    return model


class Accumulator:
    """theta0 - lr * sum_j G_j z_j kept in float64, moved by changes of G only.

    Syncing from G_old to G_new replays only the seeds whose entry changed (at most K,
    however many rounds were missed); float64 keeps the result the same, up to float64
    rounding, whatever the order of the replays.
    """

    def __init__(self, model: torch.nn.Module, seeds: np.ndarray, lr: float) -> None:
        """Start from ``model``'s weights (theta0, G = 0) for the candidate ``seeds``."""
        self.params = trainable(model)
        self.theta = [p.detach().to(torch.float64).clone() for _, p in self.params]
        self.seeds = seeds
        self.lr = lr
        self.grads = np.zeros(len(seeds), dtype=np.float64)
        self.replayed = 0

    def move_to(self, grads: np.ndarray) -> int:
        """Set G to ``grads``; returns how many perturbations that replayed."""
        if grads.shape != self.grads.shape:
            raise ValueError(f"expected {self.grads.shape[0]} seed gradients, got {grads.shape}")
        changed = np.flatnonzero(grads != self.grads)
        for j in changed:
            delta = float(grads[j]) - float(self.grads[j])
            if not math.isfinite(delta):
                raise ValueError(f"seed gradient {j} is not finite")
            for theta, zi in zip(self.theta, perturbation(self.params, int(self.seeds[j])), strict=True):
                theta.sub_(self.lr * delta * zi.to(torch.float64))
        self.grads = grads.astype(np.float64, copy=True)
        self.replayed += len(changed)
        return len(changed)

    def load_into(self, model: torch.nn.Module) -> torch.nn.Module:
        """Write the current weights (cast to the model's dtypes) into ``model``."""
        with torch.no_grad():
            for (_, p), theta in zip(trainable(model), self.theta, strict=True):
                p.data = theta.to(p.dtype).clone()
        return model

    def copy(self) -> Accumulator:
        """An independent copy (to branch off, e.g. for a voter's candidate)."""
        other = Accumulator.__new__(Accumulator)
        other.params, other.seeds, other.lr, other.replayed = self.params, self.seeds, self.lr, 0
        other.theta = [t.clone() for t in self.theta]
        other.grads = self.grads.copy()
        return other
