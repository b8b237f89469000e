"""SRIP, the spectral restricted isometry property regulariser FedSTO's phase 2 adds to the loss.

Bansal, Chen, Wang, "Can We Gain More from Orthogonality Regularizations in Training Deep
CNNs?", NeurIPS 2018, arXiv:1810.09102. For every weight W (a convolution's reshaped to
(out, in * k * k)), A = W W^T - I on its smaller side (W^T W - I when W is tall), and
R = sum over weights of sigma(A)^2, sigma the spectral norm by power iteration. The iteration
vector is not differentiated (as in spectral normalisation), so the gradient is that of
||A v|| / ||v|| at the found direction.
"""

from __future__ import annotations

import torch


def gram_deviation(weight: torch.Tensor) -> torch.Tensor:
    """A = W W^T - I (or W^T W - I), on the smaller side of W reshaped to 2-D."""
    matrix = weight.reshape(weight.shape[0], -1)
    if matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.T
    return matrix @ matrix.T - torch.eye(matrix.shape[0], dtype=matrix.dtype)


def spectral_norm(matrix: torch.Tensor, iterations: int = 2) -> torch.Tensor:
    """sigma(A) of a symmetric matrix by ``iterations`` power-iteration steps from a fixed start."""
    with torch.no_grad():
        vector = torch.ones(matrix.shape[1], dtype=matrix.dtype) / matrix.shape[1] ** 0.5
        vector = vector + 0.01 * torch.arange(matrix.shape[1], dtype=matrix.dtype)  # not orthogonal to the top one
        for _ in range(iterations):
            vector = matrix @ vector
            vector = vector / vector.norm().clamp(min=1e-12)
    return (matrix @ vector).norm()


def srip(model: torch.nn.Module, iterations: int = 2, scope: tuple[str, ...] = ()) -> torch.Tensor:
    """R(model) = sum of sigma(W W^T - I)^2 over its convolution and linear weights.

    ``scope``: only the modules whose qualified names start with one of these prefixes (e.g.
    ``("neck.", "head")``); empty, every module.
    """
    total = torch.zeros(())
    for name, module in model.named_modules():
        if scope and not name.startswith(scope):
            continue
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            total = total + spectral_norm(gram_deviation(module.weight), iterations) ** 2
    return total
