"""``fedledger node join``: become a member of a task, then serve it as a Flower SuperNode.

The node registers and stakes through the gateway (signing its own transactions; the key
never leaves this machine), starts the node agent (client/agent.py: the decrypted key stays in
this process, which signs for the ClientApps over a user-only Unix socket and reveals votes by
itself), then runs ``flower-supernode`` with fedledger's ClientApp. The SuperNode reconnects by
itself when the SuperLink restarts; the ClientApp's gateway channel waits for a restarted
gateway. The node config hands the ClientApp the agent's socket, its data and the gateway; no
key or password reaches the SuperNode or its ClientApps.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
from eth_account.signers.local import LocalAccount

from fedledger.deploy.anvil import free_port
from fedledger.errors import CommandError
from fedledger.keys import PASSWORD_ENV
from fedledger.processes import MARKER_ENV, dying_with_parent, kill_marked, new_marker, stop_group
from fedledger.server.coordinator.flower import flower_bin, toml_value
from fedledger.server.gateway.client import GatewayClient

from .data import DataSpec


@dataclass(frozen=True)
class Membership:
    """The node's standing after joining."""

    address: str
    task: str
    stake_wei: int
    registered_now: bool
    added_wei: int


def ensure_member(gateway: GatewayClient, key: LocalAccount, stake_wei: int | None) -> Membership:
    """Register with ``stake_wei`` (default: the task's minimum) unless a member; top the stake up to it.

    Raises:
        CommandError: the account is exiting, or cannot pay the stake (the message says how to fund it).
    """
    view = gateway.task()
    wanted = view.config.min_stake if stake_wei is None else stake_wei
    if wanted < view.config.min_stake:
        raise CommandError(f"--stake must be at least the task's minimum of {view.config.min_stake / 10**18} ETH")
    account = gateway.account(key.address)
    if account.exiting:
        raise CommandError(f"{key.address} asked to exit this task: it cannot serve rounds any more")
    have = int(account.stake_wei) if account.registered else 0
    missing = max(0, wanted - have)
    if missing and int(account.balance_wei) < missing:
        raise CommandError(
            f"{key.address} holds {int(account.balance_wei) / 10**18} ETH, needs {missing / 10**18} ETH of stake plus "
            f"gas: fund it first (on a local anvil chain: `fedledger chain fund {key.address}`)"
        )
    registered_now = not account.registered
    if registered_now:
        gateway.register(key, wanted)
    elif missing:
        gateway.add_stake(key, missing)
    stake = int(gateway.account(key.address).stake_wei)
    return Membership(key.address, view.task_address, stake, registered_now, 0 if registered_now else missing)


def supernode_command(
    superlink: str,
    agent: Path,
    data: DataSpec,
    gateway: str,
    root_ca: Path | None,
    *,
    gateway_ca: Path | None = None,
    auth_key: Path | None = None,
) -> list[str]:
    """``flower-supernode`` for this node: its ClientAppIo port is free, its node config names its agent and data.

    ``root_ca`` checks the SuperLink's TLS (None: plain text), ``gateway_ca`` the gateway's (the
    ClientApps read it from the node config), ``auth_key`` is the SuperNode's authentication key.
    """
    node_config = {"agent": str(agent.resolve()), "data": str(data), "gateway": gateway}
    if gateway_ca is not None:
        node_config["gateway-ca"] = str(gateway_ca.resolve())
    security = ["--root-certificates", str(root_ca.resolve())] if root_ca is not None else ["--insecure"]
    if auth_key is not None:
        security += ["--auth-supernode-private-key", str(auth_key.resolve())]
    return [
        flower_bin("flower-supernode"), *security,
        "--superlink", superlink,
        "--host", "127.0.0.1", "--port", str(free_port()),
        "--node-config", " ".join(f"{k}={toml_value(v)}" for k, v in node_config.items()),
    ]  # fmt: skip


def make_auth_key(path: Path) -> Path:
    """Write a SuperNode authentication key pair: ``path`` (OpenSSH private key, 0600) and ``path.pub``.

    A NIST P-384 key, as Flower's SuperNode authentication takes. The coordinator admits the node
    with the ``.pub`` file (``fedledger coordinate --allow-node``); the private key stays here.
    Refuses to overwrite an existing key. Returns the public key's path.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = path.with_name(path.name + ".pub")
    for existing in (path, public):
        if existing.exists():
            raise CommandError(f"{existing} exists already; choose another --out (or remove it first)")
    key = ec.generate_private_key(ec.SECP384R1())
    private_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_bytes)
    openssh = serialization.Encoding.OpenSSH
    public.write_bytes(key.public_key().public_bytes(openssh, serialization.PublicFormat.OpenSSH))
    return public


ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
"""Terminal colour and cursor codes (Flower colours its log levels whatever the output is)."""


def _copy_without_colours(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy ``source`` to ``sink`` line by line, without ANSI codes, until ``source`` closes."""
    for line in iter(source.readline, b""):
        sink.write(ANSI.sub(b"", line))
        sink.flush()


class SuperNode:
    """The node's ``flower-supernode`` and everything it spawns (found by a marker in their environment)."""

    def __init__(self, command: list[str], log_file: Path | None = None, flwr_home: Path | None = None) -> None:
        """Start it now; output goes to ``log_file`` or this terminal, and Flower's files to ``flwr_home``.

        Written to a file or to anything but a terminal, the output loses Flower's colour codes.
        """
        self.marker = os.environ.get(MARKER_ENV) or new_marker()
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}  # the agent holds the key
        env |= {
            MARKER_ENV: self.marker,
            # SuperExec looks for new ClientApp work every second by default.
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
        }
        if flwr_home is not None:  # the installed app and its state stay with the node, not in ~/.flwr
            flwr_home.mkdir(parents=True, exist_ok=True)
            env["FLWR_HOME"] = str(flwr_home.resolve())
        self._sink: IO[bytes] | None = None
        if log_file is not None:
            self._sink = open(log_file, "ab")  # noqa: SIM115  # closed in stop()
        elif not sys.stdout.isatty():
            self._sink = sys.stdout.buffer
        self.process = subprocess.Popen(
            dying_with_parent(command),  # no preexec_fn: it crashes children of gRPC users (see there)
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self._sink is not None else None,
            stderr=subprocess.STDOUT if self._sink is not None else None,
            start_new_session=True,  # Ctrl-C reaches this command, which stops the node in order
        )
        self._copier: threading.Thread | None = None
        if self._sink is not None and self.process.stdout is not None:
            self._copier = threading.Thread(
                target=_copy_without_colours, args=(self.process.stdout, self._sink), daemon=True
            )
            self._copier.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the SuperNode exits (at most ``timeout`` seconds); its exit code, None if still running."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the SuperNode's process group (SIGKILL after ``timeout``), then anything left it spawned."""
        stop_group(self.process, timeout)
        kill_marked(self.marker)  # helpers in sessions of their own (kill_marked spares this process)
        if self._copier is not None:
            self._copier.join(timeout=5)  # the pipe closes with the last process holding it
        if self._sink is not None and self._sink is not sys.stdout.buffer:
            self._sink.close()


def rounds_left(gateway: GatewayClient) -> int:
    """Rounds of the task not finalized yet (the one under way counts)."""
    total = gateway.task().config.total_rounds
    current = int(gateway.task_info().current_round)
    if current == 0:
        return total
    finished = gateway.round(current, brief=True).phase == "FINALIZED"
    return max(total - current + (0 if finished else 1), 0)


def task_over(gateway: GatewayClient) -> str | None:
    """One line saying the task has no rounds left to serve, or None while it has (or the gateway is away)."""
    try:
        if rounds_left(gateway) > 0:
            return None
    except grpc.RpcError:
        return None  # a gateway that restarts says nothing about the task
    view = gateway.task()
    return f"task {view.task_address} has played all its {view.config.total_rounds} rounds: nothing left to serve"


def serve(
    node: SuperNode,
    over: Callable[[], str | None],
    say: Callable[[str], None],
    *,
    stay: bool = False,
    waiting_for: str = "",
    poll: float = 10.0,
    grace: float = 30.0,
) -> int:
    """Run until the SuperNode exits (its code) or the task is over (0); with ``stay``, only until it exits.

    ``over`` says why the task is over (or None); ``say`` prints one line. The node leaves
    ``grace`` seconds after it first sees the task over: the coordinator still publishes the last
    model and may ask every node for its own final evaluation.
    """
    said = False
    over_since: float | None = None
    while True:
        code = node.wait(timeout=poll)
        if code is not None:
            return code
        if over_since is not None and time.monotonic() - over_since < grace:
            continue
        reason = over()
        if reason is None or said:
            continue
        if stay:
            say(f"{reason}; staying as asked (--stay): the SuperNode keeps waiting for {waiting_for} (Ctrl-C to leave)")
            said = True
            continue
        if over_since is None:
            over_since = time.monotonic()
            continue
        say(f"{reason}; leaving")
        node.stop()
        return 0
