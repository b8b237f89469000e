"""The gateway, node and audit commands as real processes (embedded chain and anvil)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from eth_account import Account

from fedledger.deploy.anvil import AnvilNode, find_anvil
from fedledger.deploy.chain import dev_key
from fedledger.server.gateway.client import GatewayClient

from ..conftest import fedledger

ETH = 10**18


class GatewayProcess:
    """`fedledger gateway serve ...` started in its own session and stopped by PID."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedledger.cli",
                "gateway",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        discovery = data_dir / "gateway.json"
        while not discovery.is_file():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway did not start: {self.log.read_text()}")
            time.sleep(0.1)
        self.address = json.loads(discovery.read_text())["address"]

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@pytest.fixture
def embedded_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path / "gw", "--embedded", "--dev-accounts", "3", "--vote-mode", "aggregate")
    try:
        yield gateway
    finally:
        gateway.stop()


def test_serve_embedded_node_init_and_status(embedded_gateway: GatewayProcess, tmp_path: Path) -> None:
    keystore = tmp_path / "node" / "keystore.json"
    env = {"FEDLEDGER_KEY_PASSWORD": "correct horse battery"}
    created = fedledger("node", "init", "--keystore", str(keystore), env=env)
    assert created.returncode == 0, created.stderr
    assert oct(keystore.stat().st_mode & 0o777) == "0o600"
    address = json.loads(keystore.read_text())["address"]
    again = fedledger("node", "init", "--keystore", str(keystore), env=env)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    weak = fedledger("node", "init", "--keystore", str(tmp_path / "weak.json"), env={"FEDLEDGER_KEY_PASSWORD": "x"})
    assert weak.returncode == 1 and "at least 8" in weak.stderr

    status = fedledger("node", "status", "--gateway", embedded_gateway.address, "--keystore", str(keystore), "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["address"].lower() == "0x" + address.lower().removeprefix("0x") and not shown["registered"]
    # Dev key 1 is funded by --dev-accounts; register it, then its status shows the stake.
    with GatewayClient(embedded_gateway.address) as client:
        assert client.task().config.vote_mode.label == "aggregate"
        client.register(dev_key(1), 3 * ETH)
    member = fedledger(
        "node", "status", "--gateway", embedded_gateway.address, "--address", dev_key(1).address, "--json"
    )
    assert json.loads(member.stdout)["stake_wei"] == 3 * ETH
    table = fedledger("node", "status", "--gateway", embedded_gateway.address, "--address", dev_key(1).address)
    assert "3 ETH" in table.stdout
    assert embedded_gateway.stop() == 0  # SIGTERM: a clean stop


def test_commands_fail_in_one_line(tmp_path: Path) -> None:
    unreachable = fedledger("node", "status", "--gateway", "127.0.0.1:1", "--address", Account.create().address)
    assert unreachable.returncode == 1 and "UNAVAILABLE" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    bad = fedledger("gateway", "serve", "--rpc-url", "http://127.0.0.1:1", "--deployment", str(tmp_path / "none.json"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    certs = fedledger("gateway", "certs", "--out", str(tmp_path / "certs"), "--host", "localhost", "--host", "10.0.0.7")
    assert certs.returncode == 0 and (tmp_path / "certs" / "server.pem").is_file()


needs_anvil = pytest.mark.skipif(
    find_anvil() is None and os.environ.get("FEDLEDGER_REQUIRE_ANVIL") != "1", reason="anvil not installed"
)


@pytest.mark.anvil
@needs_anvil
def test_rpc_mode_unreachable_chain_and_audit_without_gateway(tmp_path: Path) -> None:
    node = AnvilNode(accounts=6)
    node.start()
    gateway: GatewayProcess | None = None
    try:
        manifest = tmp_path / "deployments" / "local.json"
        deployed = fedledger("deploy", "--rpc-url", node.url, "--out", str(manifest), "--training-duration", "30")
        assert deployed.returncode == 0, deployed.stderr
        gateway = GatewayProcess(tmp_path / "gw", "--rpc-url", node.url, "--deployment", str(manifest))
        Account.enable_unaudited_hdwallet_features()
        mnemonic = "test test test test test test test test test test test junk"
        keys = [Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}") for i in range(1, 5)]
        with GatewayClient(gateway.address) as client:
            for key in keys:
                client.register(key, 2 * ETH)
            assert client.task_info().reward_pool_wei == str(10 * ETH)
        audit = fedledger("audit", "--rpc-url", node.url, "--deployment", str(manifest), "--json", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert json.loads(audit.stdout)["disagreements"] == []
        participant = fedledger(
            "audit", "--rpc-url", node.url, "--deployment", str(manifest), "--json", "participant", keys[0].address
        )
        assert json.loads(participant.stdout)["stake"] == 2 * ETH
        node.stop()  # the chain goes away; the gateway keeps answering, with UNAVAILABLE
        with GatewayClient(gateway.address, timeout=30) as client:
            with pytest.raises(grpc.RpcError) as info:
                client.task_info()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "unreachable" in (info.value.details() or "")
            with pytest.raises(grpc.RpcError) as info:
                client.account(keys[0].address)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if gateway is not None:
            gateway.stop()
        node.stop()
