"""Run anvil (Foundry's local node) from the project's npm dependencies.

``npm ci`` installs ``@foundry-rs/anvil``, whose ``.bin/anvil`` is a node wrapper that spawns the
platform binary as a child. We start the platform binary directly when we can, and always in a
new session, so that stopping the process group stops everything we started and nothing else.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from fedledger.contracts.solcjs import find_node_modules

ANVIL_INSTALL_HINT = "anvil is not installed: run `npm ci` in the repository (it installs @foundry-rs/anvil)"

ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""Private key of anvil's first dev account (public knowledge: never use it on a real network)."""


def find_anvil() -> Path | None:
    """Path of an anvil executable: the npm platform binary, one on PATH, or the npm wrapper."""
    modules = find_node_modules()
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system(), "")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    candidates: list[Path] = []
    if modules is not None and system and arch:
        candidates.append(modules / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil")
    on_path = shutil.which("anvil")
    if on_path:
        candidates.append(Path(on_path))
    if modules is not None:
        candidates.append(modules / ".bin" / "anvil")
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AnvilNode:
    """An anvil process on 127.0.0.1 that this object started and will stop."""

    def __init__(
        self,
        port: int | None = None,
        state_file: Path | None = None,
        accounts: int = 10,
        log_file: Path | None = None,
        executable: Path | None = None,
    ) -> None:
        """Describe the node; nothing starts before :meth:`start`."""
        self.port = port or free_port()
        self.state_file = state_file
        self.accounts = accounts
        self.log_file = log_file
        self.executable = executable or find_anvil()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The node's JSON-RPC URL."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts the node."""
        if self.executable is None:
            raise FileNotFoundError(ANVIL_INSTALL_HINT)
        cmd = [
            str(self.executable),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--accounts",
            str(self.accounts),
        ]
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file)]
        return cmd

    def start(self, timeout: float = 30.0) -> str:
        """Start anvil and wait until it answers; return its URL.

        Raises:
            FileNotFoundError: anvil is not installed.
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited with code {self.process.returncode} (port {self.port} in use?)")
            if _answers(self.port):
                return self.url
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"anvil did not answer on {self.url} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node and any child it spawned (its whole process group)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def __enter__(self) -> AnvilNode:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def _answers(port: int) -> bool:
    import json
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return "result" in json.loads(response.read())
    except OSError:
        return False
