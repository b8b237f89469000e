"""Start helper processes and stop them, and everything they spawned, by PID.

Every process is started in its own session with an environment marker unique to the run.
Stopping signals the session's process group, then any process still carrying the marker
(Ray and Flower spawn helpers in sessions of their own, but they inherit the environment),
so nothing of ours is left behind and nothing of anyone else's is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

MARKER_ENV = "FEDLEDGER_RUN_MARKER"


def new_marker() -> str:
    """A marker unique to this run."""
    return uuid.uuid4().hex


def marked_pids(marker: str) -> list[int]:
    """PIDs of processes whose environment carries ``marker`` (Linux /proc; empty elsewhere)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str, timeout: float = 10.0) -> int:
    """SIGTERM then SIGKILL every process carrying ``marker``, until none is left; return how many there were.

    Processes that appear meanwhile (a pool respawning a worker) are signalled too, and the call
    waits until the killed ones are gone, so a check right after it finds nothing.
    """
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    kill_deadline = deadline + 5.0
    while True:
        pids = marked_pids(marker)
        if not pids:
            return len(seen)
        now = time.monotonic()
        if now > kill_deadline:
            return len(seen)
        sig = signal.SIGKILL if now > deadline else signal.SIGTERM
        for pid in pids:
            if sig is signal.SIGKILL or pid not in seen:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        seen.update(pids)
        time.sleep(0.2)


def stop_group(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """SIGTERM the process group ``process`` leads (started with ``start_new_session``), SIGKILL it after ``timeout``.

    Returns the exit code.
    """
    if process.poll() is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=timeout)


_PARENT_DEATH_TRAMPOLINE = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:  # the parent died before the request took effect
    sys.exit(143)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def dying_with_parent(command: Sequence[str]) -> list[str]:
    r"""``command`` wrapped so that Linux SIGTERMs it when this process dies without stopping it.

    The usual way, ``Popen(preexec_fn=...)`` calling ``prctl``, forces a plain ``fork()`` that runs
    gRPC's fork handlers in the child; while another thread of this process uses a gRPC channel
    those crash the child before ``exec`` (SIGABRT, "epoll_wait ... Bad file descriptor", about one
    start in fifty: grpc/grpc#43055, grpcio 1.80 to 1.85). Without ``preexec_fn`` CPython starts
    the child with ``vfork()``, which runs no fork handlers; a small Python trampoline then asks
    for the signal and ``exec``\ s the command (same PID; the death signal survives ``exec``).
    """
    return [sys.executable, "-S", "-c", _PARENT_DEATH_TRAMPOLINE, str(os.getpid()), *command]


class ManagedProcess:
    """A child process in its own session, logging to a file."""

    def __init__(
        self, name: str, command: Sequence[str], log_file: Path, env: dict[str, str], cwd: Path | None = None
    ) -> None:
        """Start ``command`` now."""
        self.name = name
        self.log_file = log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The child's PID (also its process group and session id)."""
        return self.process.pid

    def running(self) -> bool:
        """True while the child runs."""
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit; return its code."""
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL it after ``timeout``; return the exit code."""
        return stop_group(self.process, timeout)

    def first_traceback(self, lines: int = 60) -> str:
        """The first traceback in the child's log (the cause; later ones are usually its consequences)."""
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        start = next((i for i, line in enumerate(text) if "Traceback (most recent call last)" in line), None)
        return "" if start is None else "\n".join(text[start : start + lines])

    def tail(self, lines: int = 20) -> str:
        """The end of the child's log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def interrupt_on_terminate() -> None:
    """Turn SIGTERM (and SIGINT, even where a background shell ignores it) into KeyboardInterrupt.

    Commands that start processes then stop them in their ``finally`` blocks on ``kill PID``
    exactly as on Ctrl-C.
    """

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
