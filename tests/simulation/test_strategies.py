"""The strategy plug-in point: registry by entry points, FedAvg's offline aggregate, per-update candidates."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg
from flwr.serverapp.strategy import FedMedian, FedTrimmedAvg, Krum

from fedledger.aggregation.fedavg import FedAvg
from fedledger.aggregation.registry import get_strategy, strategy_names


def test_registry_lists_the_shipped_strategies() -> None:
    assert {"fedavg", "krum", "median", "trimmed_mean", "fedkseed", "fedkseed_pro"} <= set(strategy_names())
    pro = get_strategy("fedkseed_pro", "steps=7")
    assert pro.name == "fedkseed_pro" and pro.config.pro and pro.config.steps == 7  # type: ignore[attr-defined]
    assert get_strategy("fedkseed").default_task == "charlm"
    assert isinstance(get_strategy("fedavg").server_strategy(), FlowerFedAvg)
    assert isinstance(get_strategy("fedavg").server_strategy(), FedAvg)
    assert isinstance(get_strategy("krum").server_strategy(), Krum)
    assert isinstance(get_strategy("median").server_strategy(), FedMedian)
    assert isinstance(get_strategy("trimmed_mean").server_strategy(), FedTrimmedAvg)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        get_strategy("nope")


def test_fedavg_subclass_overrides_nothing() -> None:
    own = {name for name in vars(FedAvg) if not name.startswith("_")}
    assert own == set()


def test_fedavg_offline_aggregate_is_the_weighted_mean() -> None:
    updates = [
        (OrderedDict([("w", np.array([1.0, 4.0], dtype=np.float32))]), 10),
        (OrderedDict([("w", np.array([3.0, 0.0], dtype=np.float32))]), 30),
    ]
    aggregate = get_strategy("fedavg").aggregate_offline(None, updates)
    assert aggregate is not None
    assert np.allclose(aggregate["w"], [(1 * 10 + 3 * 30) / 40, (4 * 10 + 0) / 40])
    assert get_strategy("median").aggregate_offline(None, updates) is None


def test_an_update_is_judged_at_its_share() -> None:
    plugin = get_strategy("fedavg")
    global_arrays = OrderedDict([("w", np.array([0.0, 10.0], dtype=np.float32))])
    update = OrderedDict([("w", np.array([4.0, 2.0], dtype=np.float32))])
    candidate = plugin.apply_update(global_arrays, update, 0.25)
    assert np.allclose(candidate["w"], [1.0, 8.0])
    with pytest.raises(ValueError, match="do not match"):
        plugin.apply_update(global_arrays, OrderedDict([("v", np.zeros(2, np.float32))]), 0.5)


def test_strategies_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "strategies"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for name in ("fedavg", "krum", "median", "trimmed_mean", "FedTrimmedAvg"):
        assert name in result.stdout
    assert "WARNING" not in result.stdout + result.stderr
