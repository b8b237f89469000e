"""Stubs are current; health checking, reflection, TLS and restarts work like a user expects."""

from __future__ import annotations

import secrets
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fedledger.server.gateway.certs import make_certificates
from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.ledger import open_embedded
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.server.gateway.proto import generate
from fedledger.server.gateway.server import SERVICE_NAME, GatewayServer, GatewaySettings
from tests.gateway.conftest import Gateway, start_gateway


def test_regenerating_the_stubs_changes_nothing() -> None:
    files = generate.generate()
    for name, text in files.items():
        assert (generate.PROTO_DIR / name).read_text(encoding="utf-8") == text, name
    assert "from . import gateway_pb2" in files["gateway_pb2_grpc.py"]


def test_health_and_reflection(gw: Gateway) -> None:
    health = health_pb2_grpc.HealthStub(gw.client.channel)
    for service in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(gw.client.channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    assert SERVICE_NAME == "fedledger.gateway.v1.Gateway"


def test_tls_round_trip(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    assert oct(certs.server_key.stat().st_mode & 0o777) == "0o600"
    ledger, keys = open_embedded({"initial_model_hash": b"\x01" * 32}, dev_accounts=1)
    settings = GatewaySettings(port=0, data_dir=tmp_path / "g", tls_cert=certs.server_cert, tls_key=certs.server_key)
    server = GatewayServer(ledger, settings)
    address = server.start()
    try:
        with GatewayClient(address, root_certificates=certs.ca_cert.read_bytes(), timeout=20) as client:
            assert client.register(keys[1], 2 * 10**18).events[0].name == "Registered"
            assert client.account(keys[1].address).registered
        with GatewayClient(address, timeout=5) as plain, pytest.raises(grpc.RpcError) as info:
            plain.task_info()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        other_ca = make_certificates(tmp_path / "other")
        wrong_ca = other_ca.ca_cert.read_bytes()
        with (
            GatewayClient(address, root_certificates=wrong_ca, timeout=5) as wrong,
            pytest.raises(grpc.RpcError) as info,
        ):
            wrong.task_info()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=1)


def test_restart_on_the_same_data_dir_keeps_blobs(tmp_path: Path) -> None:
    data_dir = tmp_path / "gateway"
    first = start_gateway(data_dir)
    first.register_all()
    roles = first.open()
    payloads = {p: secrets.token_bytes(3_000) for p in roles.proposers}
    for p, data in payloads.items():
        assert first.client.submit_update(first.key(p), 1, data, 10).status == pb.INCLUDED
    hashes = [p.update_hash for p in first.client.round(1).proposers]
    first.client.close()
    first.server.stop(grace=1)

    second = start_gateway(data_dir)  # a new embedded chain, the same blob folder
    try:
        assert [second.client.fetch_blob(h) for h in hashes] == list(payloads.values())
        assert (data_dir / "gateway.json").is_file() and (data_dir / "deployment.json").is_file()
    finally:
        second.client.close()
        second.server.stop(grace=1)


def test_a_tampered_blob_is_refused_with_data_loss(gw: Gateway) -> None:
    info = gw.server.blobs.put_bytes(b"stored model")
    gw.server.blobs.path(info.hash).write_bytes(b"evil model!!")
    with pytest.raises(grpc.RpcError) as exc:
        gw.client.fetch_blob(info.hash)
    assert exc.value.code() == grpc.StatusCode.DATA_LOSS


def test_store_blob_needs_a_coordinator_signature(gw: Gateway) -> None:
    info = gw.client.store_blob(gw.coordinator, b"initial model bytes")
    assert gw.client.fetch_blob(info.hash) == b"initial model bytes"
    with pytest.raises(grpc.RpcError) as exc:
        gw.client.store_blob(gw.participants[0], b"junk")
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
