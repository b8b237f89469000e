"""Linux network namespaces a test makes to stand in for hosts, linked by veth pairs to one bridge.

Each host is a namespace of its own with its loopback up. ``link`` joins a host to the hub's
bridge with a veth pair created straight inside the two namespaces (the test's own network
never holds either end), on a private /24 that exists only inside them. ``remove`` kills what
still runs inside the namespaces (they are this test's own) and deletes them, which deletes
their links and the bridge too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time


class NamespaceError(RuntimeError):
    """Namespaces cannot be made here (not root, no ``ip``, or a sandbox that forbids them)."""


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


class Hosts:
    """A hub namespace with a bridge on ``SUBNET.1`` and hosts joined to it on ``SUBNET.2``, ``.3``, ..."""

    SUBNET = "10.201.7"

    def __init__(self) -> None:
        """Check that namespaces can be made here; nothing is made yet."""
        if os.geteuid() != 0:
            raise NamespaceError("network namespaces need root")
        if shutil.which("ip") is None:
            raise NamespaceError("`ip` (iproute2) is not installed")
        self.tag = "fl" + secrets.token_hex(3)  # interface names stay within 15 characters
        self.made: list[str] = []
        self.addresses: dict[str, str] = {}
        try:
            self.hub = self._add("hub")
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "addr", "add", f"{self.SUBNET}.1/24", "dev", "br0")
            _ip("-n", self.hub, "link", "set", "br0", "up")
        except NamespaceError:
            self.remove()
            raise
        self.addresses[self.hub] = f"{self.SUBNET}.1"

    def _add(self, name: str) -> str:
        namespace = f"{self.tag}-{name}"
        _ip("netns", "add", namespace)
        self.made.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")
        return namespace

    def host(self, name: str) -> str:
        """A new namespace joined to the hub; returns its name (its address is in :attr:`addresses`)."""
        namespace = self._add(name)
        index = len(self.made)
        address = f"{self.SUBNET}.{index}"
        near, far = f"{self.tag}h{index}", f"{self.tag}n{index}"
        _ip("link", "add", near, "netns", self.hub, "type", "veth", "peer", "name", far, "netns", namespace)
        _ip("-n", self.hub, "link", "set", near, "master", "br0")
        _ip("-n", self.hub, "link", "set", near, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", far)
        _ip("-n", namespace, "link", "set", far, "up")
        self.addresses[namespace] = address
        return namespace

    def command(self, namespace: str, argv: list[str]) -> list[str]:
        """``argv`` run inside ``namespace`` (``ip netns exec`` execs it: the PID is the command's)."""
        return ["ip", "netns", "exec", namespace, *argv]

    def pids(self, namespace: str) -> list[int]:
        """The processes running inside ``namespace``."""
        try:
            return [int(pid) for pid in _ip("netns", "pids", namespace).split()]
        except NamespaceError:
            return []

    def remove(self) -> list[str]:
        """Kill whatever still runs in the namespaces, delete them; return the ones that could not be."""
        for namespace in self.made:
            for pid in self.pids(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(self.pids(n) for n in self.made) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = []
        for namespace in reversed(self.made):
            try:
                _ip("netns", "del", namespace)
            except NamespaceError:
                left.append(namespace)
        self.made = left
        return left

    @staticmethod
    def listed(tag: str) -> list[str]:
        """The namespaces whose names start with ``tag`` that exist now."""
        return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.startswith(tag)]
