"""The node agent signs for ClientApps over a user-only Unix socket and reveals votes by itself."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account.messages import encode_typed_data

from fedledger.client.agent import AgentAccount, AgentError, NodeAgent
from fedledger.contracts import typed_data as td
from fedledger.server.gateway.proto import gateway_pb2 as pb

from .conftest import ETH, Gateway


def _agents(gw: Gateway, tmp_path: Path) -> dict[str, tuple[NodeAgent, AgentAccount]]:
    agents = {}
    for i, key in enumerate(gw.participants):
        agent = NodeAgent(key, gw.client, tmp_path / f"agent-{i}").start()
        agents[key.address] = (agent, AgentAccount(agent.path))
    return agents


def test_agent_signs_a_whole_round_and_reveals_by_itself(gw: Gateway, tmp_path: Path) -> None:
    agents = _agents(gw, tmp_path)
    try:
        for _agent, account in agents.values():
            assert gw.client.register(account, 2 * ETH).gas_used > 0  # a transaction the agent signed
        roles = gw.open()
        for p in roles.proposers:
            result = gw.client.submit_update(agents[p][1], roles.round, secrets.token_bytes(64), 5)
            assert result.status == pb.INCLUDED, result.reason
        assert gw.client.round(roles.round, brief=True).phase == "VOTING"
        for v in roles.voters:
            account = agents[v][1]
            salt = gw.client.vote_salt(account, roles.round)  # signed by the agent, as a ClientApp makes it
            assert salt == gw.client.vote_salt(next(k for k in gw.participants if k.address == v), roles.round)
            gw.client.commit_vote(account, roles.round, 1, salt)
            account.reveal_later(roles.round, 1, salt)
        gw.client.flush(gw.coordinator)  # the last commitment moves the round to REVEALING
        for v in roles.voters:
            status, reason = agents[v][1].reveal_status(roles.round, wait=20)
            assert status in ("QUEUED", "INCLUDED"), reason
        deadline = time.monotonic() + 20
        while gw.client.round(roles.round, brief=True).phase != "FINALIZED" and time.monotonic() < deadline:
            gw.client.flush(gw.coordinator)
            time.sleep(0.2)
        state = gw.client.round(roles.round)
        assert state.phase == "FINALIZED" and all(v.revealed for v in state.voters)
        assert agents[roles.voters[0]][1].reveal_status(roles.round + 1)[0] == "UNKNOWN"
    finally:
        for agent, _account in agents.values():
            agent.stop()


def test_agent_signs_only_for_its_task_and_only_for_its_user(gw: Gateway, tmp_path: Path) -> None:
    key = gw.participants[0]
    agent = NodeAgent(key, gw.client, tmp_path / "agent").start()
    try:
        account = AgentAccount(agent.path)
        assert account.address == key.address
        assert stat.S_IMODE(agent.directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(agent.path.stat().st_mode) == 0o600
        view = gw.client.task()
        with pytest.raises(AgentError, match="to the task"):
            tx = {"to": gw.coordinator.address, "value": 1, "nonce": 0, "gas": 21_000, "chainId": view.chain_id}
            account.sign_transaction(tx | {"maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1})
        elsewhere = td.Domain(chain_id=view.chain_id + 1, verifying_contract=view.task_address)
        message = td.reveal_vote_message(key.address, 1, 1, b"\0" * 32)
        with pytest.raises(AgentError, match="task domain only"):
            account.sign_message(encode_typed_data(full_message=td.typed_data(td.REVEAL_VOTE, message, elsewhere)))
        with pytest.raises(AgentError, match="EIP-712"):
            from eth_account.messages import encode_defunct

            account.sign_message(encode_defunct(text="anything"))
        # The same request as another user (nobody) cannot even reach the socket.
        probe = (
            "import os, socket, sys; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX);"
            "\ntry:\n s.connect(sys.argv[1]); print('connected')\nexcept OSError as e:\n print(type(e).__name__)"
        )
        if os.getuid() == 0:
            out = subprocess.run([sys.executable, "-c", probe, str(agent.path)], capture_output=True, text=True)
            assert out.stdout.strip() == "PermissionError", out
    finally:
        agent.stop()
    assert not agent.path.exists()
    with pytest.raises(AgentError, match="did not answer"):
        _ = AgentAccount(agent.path).address
