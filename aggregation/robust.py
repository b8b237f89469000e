"""Flower's robust aggregation rules, selectable by name: krum, median, trimmed_mean.

- Krum: Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant Gradient
  Descent", NeurIPS 2017.
- Coordinate-wise median and trimmed mean: Yin et al., "Byzantine-Robust Distributed Learning:
  Towards Optimal Statistical Rates", ICML 2018, arXiv:1803.01498.
"""

from __future__ import annotations

from flwr.serverapp.strategy import FedMedian, FedTrimmedAvg, Krum, Strategy

from .base import FedledgerStrategy, quiet_flower

_SAMPLING = {"fraction_evaluate": 0.0, "min_train_nodes": 1, "min_evaluate_nodes": 0, "min_available_nodes": 1}


class KrumStrategy(FedledgerStrategy):
    """Krum: keep the update closest to its n - f - 2 nearest neighbours (f = 1 assumed malicious)."""

    name = "krum"
    paper = "Blanchard et al. 2017 (NeurIPS)"

    def server_strategy(self, *, fraction_train: float = 1.0) -> Strategy:
        """Flower's Krum tolerating one malicious update."""
        with quiet_flower():
            return Krum(fraction_train=fraction_train, num_malicious_nodes=1, **_SAMPLING)


class MedianStrategy(FedledgerStrategy):
    """Coordinate-wise median of the updates."""

    name = "median"
    paper = "Yin et al. 2018, arXiv:1803.01498"

    def server_strategy(self, *, fraction_train: float = 1.0) -> Strategy:
        """Flower's FedMedian."""
        with quiet_flower():
            return FedMedian(fraction_train=fraction_train, **_SAMPLING)


class TrimmedMeanStrategy(FedledgerStrategy):
    """Coordinate-wise mean after dropping the 20 % largest and smallest values."""

    name = "trimmed_mean"
    paper = "Yin et al. 2018, arXiv:1803.01498"

    def server_strategy(self, *, fraction_train: float = 1.0) -> Strategy:
        """Flower's FedTrimmedAvg with beta 0.2."""
        with quiet_flower():
            return FedTrimmedAvg(fraction_train=fraction_train, beta=0.2, **_SAMPLING)


krum = KrumStrategy()
median = MedianStrategy()
trimmed_mean = TrimmedMeanStrategy()
