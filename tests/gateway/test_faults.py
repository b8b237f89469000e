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

from fedledger.aggregation.base import Arrays
from fedledger.deploy.anvil import AnvilNode
from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.proto import gateway_pb2 as pb

from ..conftest import assert_books_balance, fedledger, require_anvil
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


def _play_round(
    client: GatewayClient, coordinator: LocalAccount, keys: dict[str, LocalAccount], previous: Arrays | None = None
) -> tuple[int, Arrays]:
    """Open a round, every proposer commits a model, every voter accepts all it reviews; publish their aggregate.

    From a known ``previous`` global model the coordinator's governed aggregate (bounded by the median
    change); from an unknown one (a first round from a placeholder hash), their plain FedAvg.
    """
    from fedledger import codec
    from fedledger.aggregation.registry import get_strategy

    from .test_audit import model

    roles = client.open_round(coordinator)
    updates = {p: model(roles.round * 10 + i) for i, p in enumerate(roles.proposers)}
    for p, arrays in updates.items():
        client.submit_update(keys[p], roles.round, codec.encode(arrays), 10)
    accept = {v.address: (1 << len(v.items)) - 1 for v in client.round(roles.round).voters}
    salts = {v: secrets.token_bytes(32) for v in roles.voters}
    for v in roles.voters:
        client.commit_vote(keys[v], roles.round, accept[v], salts[v])
    for v in roles.voters:
        client.reveal_vote(keys[v], roles.round, accept[v], salts[v])
    state = client.round(roles.round)
    assert state.phase == "FINALIZED" and all(p.accepted for p in state.proposers)
    accepted = sorted((p.address, p.num_examples) for p in state.proposers)
    plugin, pairs = get_strategy("fedavg"), [(updates[a], n) for a, n in accepted]
    if previous is None:
        aggregate = plugin.aggregate_offline(None, pairs)
    else:
        aggregate = plugin.governed_aggregate_offline(previous, pairs)
    assert aggregate is not None
    client.propose_model(coordinator, "publishGlobal", roles.round, codec.encode(aggregate))
    return roles.round, aggregate


@pytest.mark.anvil
@pytest.mark.slow
def test_anvil_stopped_and_started_again_from_its_state_file_the_federation_continues(tmp_path: Path) -> None:
    from fedledger.audit.replay import replay
    from fedledger.audit.report import verify
    from fedledger.audit.source import GatewaySource
    from fedledger.contracts.types import TaskConfig
    from fedledger.deploy.chain import connect, use_account
    from fedledger.deploy.deployer import deploy_task
    from fedledger.server.gateway.ledger import open_rpc
    from fedledger.server.gateway.server import GatewayServer, GatewaySettings

    require_anvil()
    node = AnvilNode(state_file=tmp_path / "anvil-state.json", accounts=10)
    node.start()
    server: GatewayServer | None = None
    try:
        keys = anvil_keys(8)
        coordinator, by_address = keys[0], {k.address: k for k in keys[1:]}
        w3 = connect(node.url)
        config = TaskConfig(initial_model_hash=b"\x01" * 32, coordinator=coordinator.address, max_committee=6)
        manifest, _ = deploy_task(w3, use_account(w3, keys[0]), config, pool_wei=10 * ETH, rpc_url=node.url)
        manifest.save(tmp_path / "deployment.json")
        relayer = anvil_keys(10)[9]  # not the coordinator: the two would race for one account's nonces
        ledger = open_rpc(node.url, tmp_path / "deployment.json", relayer)
        server = GatewayServer(ledger, GatewaySettings(port=0, data_dir=tmp_path / "gw", flush_window=0.5))
        with GatewayClient(server.start(), timeout=60, reconnect=True) as client:
            for key in keys[1:]:
                client.register(key, 2 * ETH)
            first, published = _play_round(client, coordinator, by_address)
            assert first == 1
            node.stop()  # anvil writes its state file on the way out
            assert (tmp_path / "anvil-state.json").stat().st_size > 0
            node.start()  # same port, same state: the gateway never restarted
            assert client.task_info().current_round == 1
            assert _play_round(client, coordinator, by_address, published)[0] == 2
            source = GatewaySource(client)
            events = source.events()
            assert verify(replay(events, source.config), source, len(events)).disagreements == []
        assert_books_balance(node.url, tmp_path / "deployment.json", [k.address for k in anvil_keys(10)])
    finally:
        if server is not None:
            server.stop(grace=1)
        node.stop()
