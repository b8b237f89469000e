"""The runner starts `flwr run` again when Ray did not come up, and only then."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fedledger.simulation import runner
from fedledger.simulation.runner import (
    RAY_START_ATTEMPTS,
    RAY_START_FAILURES,
    Simulation,
    SimulationError,
    SimulationOptions,
)


def fake_runs(tmp_path: Path, logs: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Simulation, list[dict]]:
    events: list[dict] = []
    monkeypatch.setattr(runner, "RAY_RETRY_PAUSE", 0.0)
    simulation = Simulation(SimulationOptions(out=tmp_path / "run"), on_event=events.append)
    (tmp_path / "run" / "server").mkdir(parents=True)
    monkeypatch.setattr(simulation, "_write_app", lambda settings: tmp_path / "app")

    def attempt(app: Path, superlink: str, number: int) -> object:
        log = tmp_path / f"flwr-{number}.log"
        log.write_text(logs[number - 1])
        if "done" in logs[number - 1]:
            (tmp_path / "run" / "server" / "summary.json").write_text("{}")
        process = SimpleNamespace(
            log_file=log,
            process=SimpleNamespace(returncode=0),
            first_traceback=lambda: "",
            tail=lambda: logs[number - 1],
        )
        simulation.processes.append(process)  # type: ignore[arg-type]
        return process

    monkeypatch.setattr(simulation, "_flower_attempt", attempt)
    return simulation, events


def test_a_ray_start_failure_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    simulation, events = fake_runs(tmp_path, [RAY_START_FAILURES[0], "done"], monkeypatch)
    simulation._run_flower(None, "127.0.0.1:1")  # type: ignore[arg-type]
    assert any("Ray did not start" in e.get("phase", "") for e in events)


def test_other_failures_and_a_last_ray_failure_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    simulation, _ = fake_runs(tmp_path / "a", ["ValueError: boom"], monkeypatch)
    with pytest.raises(SimulationError, match="ended without results"):
        simulation._run_flower(None, "127.0.0.1:1")  # type: ignore[arg-type]
    simulation, events = fake_runs(tmp_path / "b", [RAY_START_FAILURES[1]] * RAY_START_ATTEMPTS, monkeypatch)
    with pytest.raises(SimulationError, match="ended without results"):
        simulation._run_flower(None, "127.0.0.1:1")  # type: ignore[arg-type]
    assert sum("Ray did not start" in e.get("phase", "") for e in events) == RAY_START_ATTEMPTS - 1


def test_a_request_to_bind_does_not_stop_the_retry_but_a_completed_binding_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray times out 30 s after the ServerApp asked the nodes to bind; no node could answer.
    simulation, events = fake_runs(tmp_path / "a", [RAY_START_FAILURES[0]] * 2 + ["done"], monkeypatch)
    (tmp_path / "a" / "run" / "server" / "progress.jsonl").write_text('{"round": 0, "phase": "binding nodes"}\n')
    simulation._run_flower(None, "127.0.0.1:1")  # type: ignore[arg-type]
    assert sum("Ray did not start" in e.get("phase", "") for e in events) == 2
    simulation, _ = fake_runs(tmp_path / "b", [RAY_START_FAILURES[0], "done"], monkeypatch)
    (tmp_path / "b" / "run" / "server" / "progress.jsonl").write_text('{"round": 0, "phase": "nodes bound"}\n')
    with pytest.raises(SimulationError, match="ended without results"):
        simulation._run_flower(None, "127.0.0.1:1")  # type: ignore[arg-type]
