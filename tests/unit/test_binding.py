"""Binding waits for enough nodes that answer: a restarted SuperLink lists nodes that are gone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from fedledger.config import RunSettings
from fedledger.server.coordinator.app import _bind
from fedledger.server.coordinator.results import Recorder


@pytest.fixture(autouse=True)
def _in_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower's messages are made inside a run (a ServerApp's); these stand outside one."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    for name in ("_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1, raising=False)


@dataclass
class _Reply:
    node: int
    error_code: int | None = None

    def has_error(self) -> bool:
        return self.error_code is not None

    @property
    def error(self) -> SimpleNamespace:
        return SimpleNamespace(code=self.error_code, reason="unavailable" if self.error_code else "")

    @property
    def metadata(self) -> SimpleNamespace:
        return SimpleNamespace(src_node_id=self.node)

    @property
    def content(self) -> dict[str, dict[str, object]]:
        return {"config": {"address": f"0x{self.node:040x}", "partition-id": self.node}}


@dataclass
class _Grid:
    """Node 1 is gone (listed, unreachable); node 2 answers; node 3 connects after the first round of asking."""

    asked: list[list[int]] = field(default_factory=list)
    refusing: set[int] = field(default_factory=set)

    def get_node_ids(self) -> list[int]:
        return [1, 2, 3] if self.asked else [1, 2]

    def send_and_receive(self, messages: list[object], timeout: float) -> list[_Reply]:
        nodes = [m.metadata.dst_node_id for m in messages]  # type: ignore[attr-defined]
        self.asked.append(nodes)
        return [
            _Reply(n, ErrorCode.NODE_UNAVAILABLE if n == 1 else ErrorCode.CLIENT_APP_RAISED_EXCEPTION)
            if n == 1 or n in self.refusing
            else _Reply(n)
            for n in nodes
        ]


def test_nodes_that_are_gone_are_asked_again_until_enough_answered(tmp_path: Path) -> None:
    grid = _Grid()
    settings = RunSettings(num_clients=2, node_wait=30, governance=False)
    binding = _bind(grid, settings, None, grid.get_node_ids(), Recorder(tmp_path))  # type: ignore[arg-type]
    assert grid.asked == [[1, 2], [1, 3]]  # 2 answered at once; 1 again, and 3 once it was listed
    assert sorted(binding.nodes.values()) == [2, 3] and binding.unreached == {1}


def test_a_node_that_refuses_counts_as_answered_and_too_few_time_out(tmp_path: Path) -> None:
    grid = _Grid(refusing={2, 3})  # e.g. a silent simulated attacker: it answers with an error
    settings = RunSettings(num_clients=2, node_wait=1.5, governance=False)
    binding = _bind(grid, settings, None, grid.get_node_ids(), Recorder(tmp_path))  # type: ignore[arg-type]
    assert binding.nodes == {} and sorted(binding.refused) == [2, 3]
    with pytest.raises(TimeoutError, match="only 2 of 3 nodes answered"):
        _bind(_Grid(), RunSettings(num_clients=3, node_wait=1.5), None, [1, 2], Recorder(tmp_path))  # type: ignore[arg-type]
