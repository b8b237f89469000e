"""A Ray head of the simulation's own, started before Flower, which attaches to it through ``RAY_ADDRESS``.

Flower's simulation calls ``ray.init`` itself (passing only num_cpus, num_gpus, logging_level and
log_to_driver). On a busy 2-core machine the raylet it starts sometimes gives up: it waits a
hard-coded 15 s for its agents' port files (``WaitForPersistedPort``, ray-project/ray #65983) and
exits, and Flower's run fails 30 s later with "The current node timed out during startup". A
head started here (``ray start --head --block``, a child process group of this run) fails the
same way, but it is seen at once, before any Flower process exists, and only the head is started
again. ``ray start --block`` stops every Ray process it started when it gets SIGTERM.

Every head gets a block of ports of its own (:func:`reserve_ports`) for its services and its
workers: Ray's defaults (workers from 10002, the client server on 10001, the dashboard agent on
52365) are the same for every cluster on a machine, and two simulations at once (a user's, or
the test suite's two workers) had a driver fail with "Failed to start the grpc server. The
specified port is 10002".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fedledger.processes import ManagedProcess

READY = "Ray runtime started"
"""What ``ray start`` prints once the head is up."""
HEAD_ATTEMPTS = 5
HEAD_TIMEOUT = 60.0
"""Seconds one start may take before it counts as failed (the raylet's own window is 15 s)."""


BLOCK_SIZE = 128
"""Ports per head: :data:`SERVICES` for its services, the rest for its workers."""
SERVICES = (
    "port", "ray-client-server-port", "object-manager-port", "node-manager-port", "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
)  # fmt: skip
PORT_RANGE = (20_000, 32_000)
"""Where blocks are taken from: below Linux's ephemeral range (32768-60999), which the OS hands out."""
REGISTRY = Path(tempfile.gettempdir()) / "fedledger-ray-ports.json"
"""The blocks in use on this machine, each with the PID that holds it (read and written under a lock)."""


class RayStartError(RuntimeError):
    """The Ray head did not come up in :data:`HEAD_ATTEMPTS` attempts."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _locked_registry() -> Iterator[dict[str, int]]:
    """The registry's blocks (base port -> PID) of live holders; written back on exit."""
    with open(REGISTRY.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            blocks = json.loads(REGISTRY.read_text()) if REGISTRY.is_file() else {}
        except (OSError, ValueError):
            blocks = {}
        blocks = {base: pid for base, pid in blocks.items() if _pid_alive(int(pid))}
        yield blocks
        REGISTRY.write_text(json.dumps(blocks))


def reserve_ports(size: int = BLOCK_SIZE) -> range:
    """A block of ``size`` consecutive ports that are free now and that no other live process holds.

    The block is held by this process until :func:`hold_ports` hands it to another (or
    :func:`release_ports`, or this process's exit).
    """
    low, high = PORT_RANGE
    with _locked_registry() as blocks:
        taken = [range(int(base), int(base) + size) for base in blocks]
        for _ in range(200):
            base = random.randrange(low, high - size)
            block = range(base, base + size)
            if any(block.start < t.stop and t.start < block.stop for t in taken):
                continue
            if all(_bindable(port) for port in block):
                blocks[str(base)] = os.getpid()
                return block
    raise RayStartError(f"no {size} free consecutive ports in {low}-{high}")


def hold_ports(block: range, pid: int) -> None:
    """Let process ``pid`` hold a block from :func:`reserve_ports`: it is free again once ``pid`` exits."""
    with _locked_registry() as blocks:
        blocks[str(block.start)] = pid


def release_ports(block: range) -> None:
    """Give a block from :func:`reserve_ports` back."""
    with _locked_registry() as blocks:
        blocks.pop(str(block.start), None)


def ray_command(ports: range, num_cpus: int) -> list[str]:
    """``ray start`` for a head on 127.0.0.1 that blocks until it is stopped, on ``ports`` only."""
    executable = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    services = [f"--{name}={port}" for name, port in zip(SERVICES, ports, strict=False)]
    workers = ports[len(SERVICES) :]
    return [
        executable, "start", "--head", "--block", *services,
        f"--min-worker-port={workers.start}", f"--max-worker-port={workers.stop - 1}",
        f"--num-cpus={num_cpus}", "--num-gpus=0",
        "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
    ]  # fmt: skip


def start_ray_head(
    start: Callable[[str, list[str]], ManagedProcess],
    num_cpus: int | None = None,
    on_retry: Callable[[int, str], None] = lambda _attempt, _cause: None,
) -> tuple[ManagedProcess, str, int]:
    """Start a Ray head (``start(name, command)`` runs the process); return it, its address and the failed attempts.

    A start that exits, or prints no :data:`READY` within :data:`HEAD_TIMEOUT`, is stopped and
    tried again (``on_retry(attempt, cause)`` is told), at most :data:`HEAD_ATTEMPTS` times.
    """
    cpus = num_cpus or os.cpu_count() or 1
    cause = ""
    for attempt in range(1, HEAD_ATTEMPTS + 1):
        ports = reserve_ports()
        process = start("ray-head" if attempt == 1 else f"ray-head-{attempt}", ray_command(ports, cpus))
        hold_ports(ports, process.pid)
        cause = _await_ready(process)
        if cause is None:
            return process, f"127.0.0.1:{ports.start}", attempt - 1
        process.stop()
        release_ports(ports)
        on_retry(attempt, cause)
    raise RayStartError(f"the Ray head did not start in {HEAD_ATTEMPTS} attempts; last: {cause}")


def _await_ready(process: ManagedProcess) -> str | None:
    """None once the head is up, else why it is not."""
    give_up = time.monotonic() + HEAD_TIMEOUT
    while time.monotonic() < give_up:
        text = process.log_file.read_text(errors="replace") if process.log_file.is_file() else ""
        if READY in text:
            return None
        if not process.running():
            return f"ray start exited with {process.process.returncode}: {process.tail(5)}"
        time.sleep(0.1)
    return f"no {READY!r} after {HEAD_TIMEOUT:.0f}s: {process.tail(5)}"
