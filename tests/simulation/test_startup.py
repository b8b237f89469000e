"""Start-up: the run's own Ray head (retried when it fails), --ray-address, and the speed benchmarks' quick modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import governance_overhead, ray_starts
from fedledger.processes import ManagedProcess, marked_pids
from fedledger.simulation import ray_head
from fedledger.simulation.runner import Simulation, SimulationOptions


def test_a_head_that_does_not_come_up_is_started_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first "ray start" exits at once (as when the raylet gives up), the second comes up.
    scripts = iter(["exit 3", f"echo '{ray_head.READY}'; sleep 30"])
    started: list[ManagedProcess] = []
    monkeypatch.setattr(ray_head, "ray_command", lambda port, cpus: ["sh", "-c", next(scripts)])

    def start(name: str, command: list[str]) -> ManagedProcess:
        started.append(ManagedProcess(name, command, tmp_path / f"{name}.log", {"PATH": "/usr/bin:/bin"}))
        return started[-1]

    retries: list[int] = []
    process, address, failures = ray_head.start_ray_head(
        start, 1, on_retry=lambda attempt, _cause: retries.append(attempt)
    )
    try:
        assert failures == 1 and retries == [1] and len(started) == 2
        assert process is started[1] and process.running() and not started[0].running()
        assert address.startswith("127.0.0.1:")
    finally:
        process.stop()


def test_a_retried_head_start_leaves_only_the_running_head_among_the_runs_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stopped first attempt among the run's processes made the run fail later with
    # "ray-head stopped unexpectedly" (seen when the first head's GCS port was taken meanwhile).
    scripts = iter(["exit 3", f"echo '{ray_head.READY}'; sleep 30"])
    monkeypatch.setattr(ray_head, "ray_command", lambda port, cpus: ["sh", "-c", next(scripts)])
    simulation = Simulation(SimulationOptions(out=tmp_path / "run", clients=2, rounds=1))
    simulation.out.mkdir(parents=True)
    try:
        simulation._start_ray()
        assert simulation.ray_start_failures == 1
        assert [p.name for p in simulation.processes] == ["ray-head-2"]
        assert all(p.running() for p in simulation.processes)
    finally:
        simulation.stop()


def test_a_head_that_never_comes_up_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_head, "ray_command", lambda port, cpus: ["sh", "-c", "echo raylet died; exit 1"])
    monkeypatch.setattr(ray_head, "HEAD_ATTEMPTS", 2)

    def start(name: str, command: list[str]) -> ManagedProcess:
        return ManagedProcess(name, command, tmp_path / f"{name}.log", {"PATH": "/usr/bin:/bin"})

    with pytest.raises(ray_head.RayStartError, match=r"did not start in 2 attempts.*raylet died"):
        ray_head.start_ray_head(start, 1)


def test_two_heads_get_disjoint_port_blocks_held_while_their_process_lives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two clusters on Ray's default ports (workers from 10002) made a driver fail with
    # "Failed to start the grpc server. The specified port is 10002".
    monkeypatch.setattr(ray_head, "REGISTRY", tmp_path / "ports.json")
    first = ray_head.reserve_ports()
    sleeper = ManagedProcess("holder", ["sleep", "30"], tmp_path / "holder.log", {"PATH": "/usr/bin:/bin"})
    ray_head.hold_ports(first, sleeper.pid)
    blocks = [ray_head.reserve_ports() for _ in range(20)]
    try:
        for block in blocks:
            assert len(block) == ray_head.BLOCK_SIZE and not set(block) & set(first)
            assert ray_head.PORT_RANGE[0] <= block.start and block.stop <= ray_head.PORT_RANGE[1]
        assert all(not set(a) & set(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
        command = ray_head.ray_command(first, 2)
        assert f"--port={first.start}" in command and f"--max-worker-port={first.stop - 1}" in command
        assert all(int(arg.split("=")[1]) in first for arg in command if arg.startswith("--") and "port" in arg)
    finally:
        sleeper.stop()
    registry = (tmp_path / "ports.json").read_text()
    ray_head.release_ports(blocks[0])  # the holder has exited: its block is pruned at the next look
    assert str(first.start) in registry and str(first.start) not in (tmp_path / "ports.json").read_text()


@pytest.mark.slow
def test_simulate_attaches_to_a_running_ray_head(tmp_path: Path) -> None:
    """--ray-address: Flower's simulation runs on a cluster someone else started (here: this test, on 127.0.0.1)."""
    import os

    env = dict(os.environ)
    head, address, _ = ray_head.start_ray_head(
        lambda name, command: ManagedProcess(name, command, tmp_path / f"{name}.log", env)
    )
    try:
        simulation = Simulation(SimulationOptions(out=tmp_path / "run", clients=3, rounds=1, ray_address=address))
        report = simulation.run()
        assert report.rounds and report.rounds[0].accepted
        assert not (tmp_path / "run" / "logs" / "ray-head.log").exists()  # it started no head of its own
        assert marked_pids(simulation.marker) == []
        assert head.running()  # the cluster it attached to is still there
    finally:
        head.stop()


@pytest.mark.slow
def test_ray_starts_quick_mode_starts_every_run() -> None:
    figures = ray_starts.measure(runs=1, clients=3)  # every other simulation test starts Ray too
    assert figures["failed_runs"] == 0, figures["failures"]
    assert figures["mean_nodes_bound_s"] is not None and figures["mean_nodes_bound_s"] < 60


@pytest.mark.slow
def test_governance_overhead_quick_mode_measures_both_runs() -> None:
    figures = governance_overhead.measure(seed=1, clients=4, rounds=3)
    for key in ("governed_mean_round_s", "plain_mean_round_s", "overhead_s_per_round", "ratio_mean_round_wall"):
        assert isinstance(figures[key], float), key
    # The direction of the claim: governance costs time per round, and not seconds of it at 4 clients.
    assert figures["governed_mean_round_s"] > figures["plain_mean_round_s"]
    assert 0 < figures["overhead_s_per_round"] < 3.0
