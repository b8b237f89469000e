"""FedAvg: weighted mean of client models by example count.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", AISTATS 2017, arXiv:1602.05629.
"""

from __future__ import annotations

from flwr.app import MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from .base import Arrays, FedledgerStrategy, from_record, quiet_flower, to_record


class FedAvg(flwr_strategy.FedAvg):
    """Flower's FedAvg, unchanged: it already weighs replies by their ``num-examples`` metric."""


class FedAvgStrategy(FedledgerStrategy):
    """FedAvg server, local SGD clients, digits by default."""

    name = "fedavg"
    paper = "McMahan et al. 2017, arXiv:1602.05629"
    bounded_aggregate = True  # governed rounds only; plain FedAvg (no governance) is Flower's, unchanged

    def server_strategy(self, *, fraction_train: float = 1.0) -> FedAvg:
        """FedAvg sampling ``fraction_train`` of the nodes when it runs without governance."""
        with quiet_flower():  # evaluation is centralised on purpose
            return FedAvg(
                fraction_train=fraction_train,
                fraction_evaluate=0.0,
                min_train_nodes=1,
                min_evaluate_nodes=0,
                min_available_nodes=1,
            )

    def aggregate_offline(self, previous: Arrays | None, updates: list[tuple[Arrays, int]]) -> Arrays:
        """Flower's own weighted mean (``aggregate_arrayrecords``) over the same records."""
        records = [
            RecordDict(
                {
                    "arrays": to_record(arrays),
                    "metrics": MetricRecord({"num-examples": num_examples}),
                }
            )
            for arrays, num_examples in updates
        ]
        aggregated = aggregate_arrayrecords(records, "num-examples")
        return from_record(aggregated)


plugin = FedAvgStrategy()
