"""Long-lived components survive a gateway restart: calls wait for it, the coordinator re-opens safely."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from fedledger.server.coordinator.governed import GovernedStrategy
from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.server.gateway.server import GatewayServer, GatewaySettings

from .conftest import ETH, start_gateway


def test_a_reconnecting_client_waits_for_a_restarted_gateway_and_a_plain_one_fails_fast(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "gateway", participants=2)
    port = gw.server.port
    gw.client.close()
    gw.server.stop(grace=1)
    plain = GatewayClient(f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        plain.task_info()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    plain.close()

    settings = GatewaySettings(port=port, data_dir=tmp_path / "gateway", flush_window=0.3)
    restarted: list[GatewayServer] = []

    def restart() -> None:
        restarted.append(GatewayServer(gw.ledger, settings))
        restarted[0].start()

    timer = threading.Timer(2.0, restart)
    timer.start()
    try:
        with GatewayClient(f"127.0.0.1:{port}", timeout=30, reconnect=True) as client:
            started = time.monotonic()
            client.register(gw.participants[0], 2 * ETH)  # issued while nothing listens
            waited = time.monotonic() - started
            assert client.account(gw.participants[0].address).registered
        assert waited >= 1.5  # it really waited for the gateway to come back
    finally:
        timer.join()
        for server in restarted:
            server.stop(grace=1)


class FlakyGateway:
    """Answers open_round with CANCELLED once; ``opened`` says whether that call's transaction landed."""

    def __init__(self, opened: bool) -> None:
        self.opened = opened
        self.calls = 0
        self.current = 1

    def open_round(self, _coordinator: object) -> pb.RoundRoles:
        self.calls += 1
        if self.calls == 1:
            if self.opened:
                self.current = 2
            raise _Cancelled()
        self.current = 2
        return pb.RoundRoles(round=2, proposers=["0xNEW"], voters=[])

    def wait_ready(self, timeout: float) -> None:
        pass

    def task_info(self) -> SimpleNamespace:
        return SimpleNamespace(current_round=self.current)

    def round(self, round_: int = 0) -> SimpleNamespace:
        return SimpleNamespace(
            round=round_ or self.current,
            seed=b"",
            deadline=0,
            reviewers=1,
            proposers=[SimpleNamespace(address="0xP")],
            voters=[SimpleNamespace(address="0xV")],
        )


class _Cancelled(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED


@pytest.mark.parametrize("landed", [True, False])
def test_opening_a_round_across_a_restart_never_opens_two(landed: bool) -> None:
    strategy = object.__new__(GovernedStrategy)
    strategy.gateway = FlakyGateway(opened=landed)  # type: ignore[assignment]
    strategy.coordinator = None  # type: ignore[assignment]
    roles = strategy._open_round(2)
    assert roles.round == 2
    if landed:  # the first transaction opened it: read the roles back, send nothing more
        assert strategy.gateway.calls == 1 and list(roles.proposers) == ["0xP"] and list(roles.voters) == ["0xV"]
    else:
        assert strategy.gateway.calls == 2 and list(roles.proposers) == ["0xNEW"]
