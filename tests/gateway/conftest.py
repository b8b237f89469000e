"""A real gateway on 127.0.0.1 (ephemeral port) over a fresh embedded chain."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.ledger import Ledger, open_embedded
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.server.gateway.server import GatewayServer, GatewaySettings

ETH = 10**18


@dataclass
class Gateway:
    """A running gateway, a client and the dev keys (0 = coordinator)."""

    server: GatewayServer
    client: GatewayClient
    coordinator: LocalAccount
    participants: list[LocalAccount]
    salts: dict[str, bytes] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        return self.server.ledger

    def key(self, address: str) -> LocalAccount:
        return next(k for k in self.participants if k.address == address)

    def register_all(self, stake: int = 2 * ETH) -> None:
        for key in self.participants:
            self.client.register(key, stake)

    def open(self) -> pb.RoundRoles:
        return self.client.open_round(self.coordinator)

    def submit_all(self, roles: pb.RoundRoles) -> list[pb.ActionResult]:
        return [
            self.client.submit_update(self.key(p), roles.round, secrets.token_bytes(256), 10) for p in roles.proposers
        ]

    def vote_all(self, roles: pb.RoundRoles, bits: int) -> None:
        for v in roles.voters:
            self.salts[v] = secrets.token_bytes(32)
            self.client.commit_vote(self.key(v), roles.round, bits, self.salts[v])

    def reveal_all(self, roles: pb.RoundRoles, bits: int) -> None:
        for v in roles.voters:
            self.client.reveal_vote(self.key(v), roles.round, bits, self.salts[v])


def start_gateway(data_dir: Path, participants: int = 6, window: float = 0.3, **task: object) -> Gateway:
    fields = {
        "initial_model_hash": b"\x01" * 32,
        "training_duration": 60,
        "voting_duration": 60,
        "reveal_duration": 60,
        "max_committee": 64,
        **task,
    }
    ledger, keys = open_embedded(fields, dev_accounts=participants)
    server = GatewayServer(ledger, GatewaySettings(port=0, data_dir=data_dir, flush_window=window))
    client = GatewayClient(server.start(), timeout=60)
    client.wait_ready()
    return Gateway(server, client, keys[0], keys[1:])


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway with 6 funded participants, per-update voting, 0.3 s flush window."""
    gateway = start_gateway(tmp_path / "gateway")
    try:
        yield gateway
    finally:
        gateway.client.close()
        gateway.server.stop(grace=1)
