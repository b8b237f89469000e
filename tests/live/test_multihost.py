"""The live federation across hosts, each a Linux network namespace this test makes, with TLS on every link.

The hub namespace holds the chain (anvil on its own loopback), the gateway and the coordinator
(SuperLink, ServerApp); each node runs in a namespace of its own, joined to the hub by a veth
pair on a private /24 that exists only inside these namespaces. The gateway and the SuperLink
serve TLS with certificates from `fedledger gateway certs` for the hub's address; every client
(`node join`, its ClientApps, the coordinator, its ServerApp, `flwr`) verifies them against the
CA. The SuperLink admits only the SuperNodes whose public keys the coordinator registered
(`--allow-node`): an intruder with a key of its own is refused. One round runs to the end and
`audit verify` (inside the hub) finds no disagreement. Every namespace, link and process the
test made is removed at the end, also on failure. Without root or iproute2 the test skips,
saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.keys import create_keystore
from fedledger.processes import MARKER_ENV, ManagedProcess, kill_marked, marked_pids, new_marker
from fedledger.server.coordinator.flower import flower_bin

from ..conftest import require_anvil
from .netns import Hosts, NamespaceError

pytestmark = [pytest.mark.slow, pytest.mark.anvil]

PASSWORD = "correct horse battery staple"
RPC_PORT, GATEWAY_PORT, SUPERLINK_PORT = 8545, 50051, 9092
"""Every host is a fresh network namespace: the default ports are free in it."""

PROBE = """
import ssl, sys, urllib.request, grpc
gateway, superlink, ca = sys.argv[1:]
root = open(ca, "rb").read()
grpc.channel_ready_future(grpc.secure_channel(gateway, grpc.ssl_channel_credentials(root))).result(timeout=20)
print("gateway-tls")
try:
    grpc.channel_ready_future(grpc.insecure_channel(gateway)).result(timeout=3)
    print("gateway-plain-answered")
except grpc.FutureTimeoutError:
    print("gateway-plain-refused")
context = ssl.create_default_context(cafile=ca)
with urllib.request.urlopen(f"https://{superlink}/health", context=context, timeout=10) as answer:
    print("superlink-tls" if answer.status == 200 else f"superlink-{answer.status}")
try:
    urllib.request.urlopen(f"http://{superlink}/health", timeout=5)
    print("superlink-plain-answered")
except Exception:  # a reset, a TLS alert read as a bad status line, a timeout: no plain-text answer
    print("superlink-plain-refused")
"""
"""Run on a node's host: the gateway and the SuperLink answer TLS verified by the CA, never plain text."""


class Federation:
    """The hosts and every process started in them (each with a marker, so it can be killed whole)."""

    def __init__(self, root: Path, hosts: Hosts) -> None:
        self.root, self.hosts = root, hosts
        self.env = {"FEDLEDGER_KEY_PASSWORD": PASSWORD, "FLWR_HOME": str(root / "flwr-home")}
        self.processes: dict[str, ManagedProcess] = {}
        self.markers: dict[str, str] = {}

    @property
    def hub(self) -> str:
        return self.hosts.addresses[self.hosts.hub]

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fedledger.cli", *args]

    def run(self, namespace: str, *args: str, check: bool = True) -> str:
        """A fedledger command inside ``namespace``, to its end."""
        done = subprocess.run(
            self.hosts.command(namespace, self.argv(*args)),
            capture_output=True, text=True, check=False, cwd=self.root, env=dict(os.environ) | self.env,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, f"fedledger {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str, namespace: str, argv: list[str]) -> ManagedProcess:
        self.markers[name] = marker = new_marker()
        env = dict(os.environ) | self.env | {MARKER_ENV: marker}
        command = self.hosts.command(namespace, argv)
        process = ManagedProcess(name, command, self.root / "logs" / f"{name}.log", env, cwd=self.root)
        self.processes[name] = process
        return process

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        for marker in self.markers.values():
            kill_marked(marker)
        self.run(self.hosts.hub, "chain", "down", check=False)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.tail(30)}" for name, p in self.processes.items())


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    require_anvil()
    try:
        hosts = Hosts()
    except NamespaceError as exc:
        pytest.skip(f"cannot make network namespaces here: {exc}")
    fed = Federation(tmp_path, hosts)
    try:
        yield fed
    finally:
        try:
            fed.stop_all()
        finally:
            left = hosts.remove()
        assert not left and not Hosts.listed(hosts.tag), f"namespaces left behind: {left}"
        assert not [name for name, marker in fed.markers.items() if marked_pids(marker)], "processes left behind"


def wait_for_log(process: ManagedProcess, text: str, fed: Federation, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log_file.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in {process.name} after {timeout:.0f}s:\n{fed.logs()}"
        time.sleep(0.3)


def test_one_round_across_namespaces_with_tls_on_every_link_and_authenticated_nodes(
    federation: Federation,
) -> None:
    fed = federation
    hub = fed.hosts.hub
    nodes = [fed.hosts.host(f"node-{i}") for i in range(2)]
    intruder = fed.hosts.host("intruder")
    started = time.monotonic()

    fed.run(hub, "gateway", "certs", "--out", "certs", "--host", fed.hub)
    url = fed.run(hub, "chain", "up", "--port", str(RPC_PORT)).strip()
    assert url == f"http://127.0.0.1:{RPC_PORT}"  # the chain is reachable inside the hub only
    keystores = [f"keys/{name}.json" for name in ("coordinator", "node-0", "node-1")]
    for keystore in keystores:
        create_keystore(fed.root / keystore, PASSWORD)
    fed.run(hub, "chain", "fund", "--rpc-url", url, *keystores)
    fed.run(
        hub, "deploy", "--rpc-url", url, "--key-file", "keys/coordinator.json", "--out", "deployments/local.json",
        "--initial-model", "digits:0", "--rounds", "1", "--max-committee", "2", "--pool", "5",
        "--training-duration", "40", "--voting-duration", "30", "--reveal-duration", "30",
    )  # fmt: skip
    for name in ("node-0", "node-1", "intruder"):
        fed.run(hub, "node", "auth-key", "--out", f"keys/{name}-auth")
    gateway = f"{fed.hub}:{GATEWAY_PORT}"
    superlink = f"{fed.hub}:{SUPERLINK_PORT}"
    fed.start(
        "gateway", hub, fed.argv(
            "gateway", "serve", "--rpc-url", url, "--deployment", "deployments/local.json",
            "--relayer-key-file", "keys/coordinator.json", "--host", fed.hub, "--port", str(GATEWAY_PORT),
            "--tls-cert", "certs/server.pem", "--tls-key", "certs/server-key.pem", "--flush-window", "1",
        ),
    )  # fmt: skip
    out = fed.root / "runs" / "live"
    coordinator = fed.start(
        "coordinator", hub, fed.argv(
            "coordinate", "--gateway", gateway, "--tls-ca", "certs/ca.pem", "--keystore", "keys/coordinator.json",
            "--host", fed.hub, "--port", str(SUPERLINK_PORT),
            "--tls-cert", "certs/server.pem", "--tls-key", "certs/server-key.pem",
            "--allow-node", "keys/node-0-auth.pub", "--allow-node", "keys/node-1-auth.pub",
            "--nodes", "2", "--local-epochs", "1", "--out", str(out),
        ),
    )  # fmt: skip
    # The keys are admitted before the SuperLink says it is ready; a node refused at activation exits.
    wait_for_log(coordinator, "SuperLink ready", fed)
    for i, namespace in enumerate(nodes):
        fed.start(
            f"node-{i}", namespace, fed.argv(
                "node", "join", "--gateway", gateway, "--tls-ca", "certs/ca.pem",
                "--superlink", superlink, "--superlink-ca", "certs/ca.pem", "--auth-key", f"keys/node-{i}-auth",
                "--keystore", f"keys/node-{i}.json", "--data", f"digits:{i}/2",
                "--log-file", str(fed.root / "logs" / f"supernode-{i}.log"),
            ),
        )  # fmt: skip
    # A SuperNode whose key nobody registered: the SuperLink refuses to activate it.
    fed.start(
        "intruder", intruder, [
            flower_bin("flower-supernode"), "--root-certificates", "certs/ca.pem", "--superlink", superlink,
            "--auth-supernode-private-key", "keys/intruder-auth",
        ],
    )  # fmt: skip

    # From a node's host, while the round runs: both servers speak TLS the CA vouches for, never plain text.
    probe = fed.hosts.command(nodes[0], [sys.executable, "-c", PROBE, gateway, superlink, "certs/ca.pem"])
    done = subprocess.run(probe, capture_output=True, text=True, check=False, cwd=fed.root, timeout=120)
    answers = ["gateway-tls", "gateway-plain-refused", "superlink-tls", "superlink-plain-refused"]
    assert done.stdout.split() == answers, done.stdout + done.stderr
    assert coordinator.wait(timeout=400) == 0, fed.logs()
    rounds = [json.loads(line) for line in (out / "server" / "rounds.jsonl").read_text().splitlines()]
    summary = json.loads((out / "server" / "summary.json").read_text())
    assert [r["round"] for r in rounds] == [1] and rounds[0]["accepted"] is True, rounds
    assert rounds[0]["metrics"]["accuracy"] > 0.3
    assert len(summary["nodes"]) == 2

    refused = fed.processes["intruder"]
    assert refused.wait(timeout=60) != 0, refused.tail()
    assert "Failed to activate SuperNode" in refused.log_file.read_text(errors="replace"), refused.tail()
    audit = fed.run(
        hub, "audit", "--rpc-url", url, "--deployment", "deployments/local.json",
        "--blob-dir", ".fedledger/gateway/blobs", "--json", "verify",
    )  # fmt: skip
    verdict = json.loads(audit)
    assert verdict["disagreements"] == [], verdict
    print(f"\nmulti-host federation (namespaces, TLS, node auth): {time.monotonic() - started:.1f}s")
