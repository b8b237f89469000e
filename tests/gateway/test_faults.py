"""Faults with real processes on 127.0.0.1, each stopped by PID: the chain (anvil) outlives them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.deploy.anvil import AnvilNode
from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.proto import gateway_pb2 as pb

from ..conftest import fedledger, require_anvil
from .test_cli_processes import GatewayProcess

ETH = 10**18
MNEMONIC = "test test test test test test test test test test test junk"


def anvil_keys(count: int) -> list[LocalAccount]:
    """Anvil's funded dev accounts 0..count-1 (0 deploys the task and coordinates it)."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    require_anvil()
    node = AnvilNode(accounts=10)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def deploy(node: AnvilNode, tmp_path: Path, *flags: str) -> Path:
    manifest = tmp_path / "deployment.json"
    deployed = fedledger("deploy", "--rpc-url", node.url, "--out", str(manifest), "--max-committee", "6", *flags)
    assert deployed.returncode == 0, deployed.stderr
    return manifest


def unfinished(data_dir: Path) -> int:
    (db,) = data_dir.glob("actions-*.db")
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM actions WHERE done = 0").fetchone()[0])


@pytest.mark.anvil
@pytest.mark.slow
def test_sigkill_after_the_ack_loses_no_action_and_a_retry_gets_the_same_outcome(
    anvil: AnvilNode, tmp_path: Path
) -> None:
    manifest = deploy(anvil, tmp_path)
    keys = anvil_keys(8)
    coordinator, participants = keys[0], keys[1:]
    by_address = {k.address: k for k in participants}
    data_dir = tmp_path / "gw"
    where = ("--rpc-url", anvil.url, "--deployment", str(manifest))
    # A 60 s flush window: nothing is relayed before the kill unless the log is replayed.
    gateway = GatewayProcess(data_dir, *where, "--flush-window", "60")
    with GatewayClient(gateway.address, timeout=60) as client:
        for key in participants:
            client.register(key, 2 * ETH)
        roles = client.open_round(coordinator)
        assert len(roles.proposers) >= 2
        acked = list(roles.proposers[:-1])  # one proposer holds back, so the queue does not fill
        blobs = {p: secrets.token_bytes(2048) for p in roles.proposers}
        for p in acked:
            result = client.submit_update(by_address[p], roles.round, blobs[p], 10, wait=False)
            assert result.status == pb.QUEUED
        assert not any(s.committed for s in client.round(roles.round).proposers)  # acknowledged, not relayed
    os.killpg(gateway.process.pid, signal.SIGKILL)  # no flush, no clean shutdown
    gateway.process.wait(timeout=10)
    assert unfinished(data_dir) == len(acked)

    (data_dir / "gateway.json").unlink()  # the dead gateway's address; the new one writes its own
    gateway = GatewayProcess(data_dir, *where, "--flush-window", "0.3")
    try:
        with GatewayClient(gateway.address, timeout=60) as client:
            client.flush(coordinator)  # the replayed commitments were queued before the first call
            state = client.round(roles.round)
            assert [s.committed for s in state.proposers] == [s.address in acked for s in state.proposers]
            assert unfinished(data_dir) == 0
            # The same signed action again: the recorded outcome, no second transaction.
            before = len(client.events(roles.round, names=["UpdateCommitted"]))
            retry = client.submit_update(by_address[acked[0]], roles.round, blobs[acked[0]], 10)
            assert retry.status == pb.INCLUDED
            assert len(client.events(roles.round, names=["UpdateCommitted"])) == before == len(acked)
            # The round goes on: the last proposer commits, every voter accepts, nobody honest is slashed.
            last = roles.proposers[-1]
            client.submit_update(by_address[last], roles.round, blobs[last], 10)
            salts = {v: secrets.token_bytes(32) for v in roles.voters}
            accept = {v.address: (1 << len(v.items)) - 1 for v in client.round(roles.round).voters}
            for v in roles.voters:
                client.commit_vote(by_address[v], roles.round, accept[v], salts[v])
            for v in roles.voters:  # the last reveal finalizes the round
                client.reveal_vote(by_address[v], roles.round, accept[v], salts[v])
            final = client.round(roles.round)
            assert final.phase == "FINALIZED"
            assert client.events(roles.round, names=["Slashed"]) == []
        audit = fedledger("audit", "--rpc-url", anvil.url, "--deployment", str(manifest), "--json", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert json.loads(audit.stdout)["disagreements"] == []
    finally:
        gateway.stop()
