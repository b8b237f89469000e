"""A Ray head of the simulation's own, started before Flower, which attaches to it through ``RAY_ADDRESS``.

Flower's simulation calls ``ray.init`` itself (passing only num_cpus, num_gpus, logging_level and
log_to_driver). On a busy 2-core machine the raylet it starts sometimes gives up: it waits a
hard-coded 15 s for its agents' port files (``WaitForPersistedPort``, ray-project/ray #65983) and
exits, and Flower's run fails 30 s later with "The current node timed out during startup". A
head started here (``ray start --head --block``, a child process group of this run) fails the
same way, but it is seen at once, before any Flower process exists, and only the head is started
again. ``ray start --block`` stops every Ray process it started when it gets SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fedledger.deploy.anvil import free_port
from fedledger.processes import ManagedProcess

READY = "Ray runtime started"
"""What ``ray start`` prints once the head is up."""
HEAD_ATTEMPTS = 5
HEAD_TIMEOUT = 60.0
"""Seconds one start may take before it counts as failed (the raylet's own window is 15 s)."""


class RayStartError(RuntimeError):
    """The Ray head did not come up in :data:`HEAD_ATTEMPTS` attempts."""


def ray_command(port: int, num_cpus: int) -> list[str]:
    """``ray start`` for a head on 127.0.0.1 that blocks until it is stopped."""
    executable = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    return [
        executable, "start", "--head", "--block",
        f"--port={port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
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
        port = free_port()
        process = start("ray-head" if attempt == 1 else f"ray-head-{attempt}", ray_command(port, cpus))
        cause = _await_ready(process)
        if cause is None:
            return process, f"127.0.0.1:{port}", attempt - 1
        process.stop()
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
