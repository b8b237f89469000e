"""TLS and SuperNode authentication options: what reaches Flower's commands, and what is refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key
from pydantic import ValidationError

from fedledger.client.data import parse_data_spec
from fedledger.client.join import make_auth_key, supernode_command
from fedledger.errors import CommandError
from fedledger.server.coordinator.flower import SuperLinkSecurity, superlink_command, write_flwr_config
from fedledger.server.coordinator.settings import CoordinatorOptions
from fedledger.server.gateway.certs import make_certificates

from ..conftest import fedledger


def test_a_node_auth_key_is_a_p384_pair_flower_reads_and_is_never_overwritten(tmp_path: Path) -> None:
    private = tmp_path / "keys" / "node-auth"
    public = make_auth_key(private)
    assert public == tmp_path / "keys" / "node-auth.pub"
    key = load_ssh_private_key(private.read_bytes(), None)  # as flower-supernode loads it
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert load_ssh_public_key(public.read_bytes()).public_numbers() == key.public_key().public_numbers()
    assert private.stat().st_mode & 0o777 == 0o600
    before = private.read_bytes()
    with pytest.raises(CommandError, match="exists already"):
        make_auth_key(private)
    assert private.read_bytes() == before


def test_the_superlink_serves_tls_and_admits_only_registered_nodes_when_told(tmp_path: Path) -> None:
    files = make_certificates(tmp_path / "certs", ("10.0.0.1",))
    plain = superlink_command(tmp_path / "db", 9092, 9093, simulation=False)
    assert "--insecure" in plain and "--enable-supernode-auth" not in plain
    assert plain[plain.index("--host") + 1] == "127.0.0.1"
    security = SuperLinkSecurity(files.ca_cert, files.server_cert, files.server_key, (tmp_path / "n.pub",))
    secure = superlink_command(tmp_path / "db", 9092, 9093, simulation=False, host="10.0.0.1", security=security)
    assert "--insecure" not in secure and "--enable-supernode-auth" in secure
    for flag, path in (("--ssl-ca-certfile", files.ca_cert), ("--ssl-certfile", files.server_cert)):
        assert secure[secure.index(flag) + 1] == str(path.resolve())
    assert secure[secure.index("--host") + 1] == "10.0.0.1"

    write_flwr_config(tmp_path / "home", "10.0.0.1:9092", files.ca_cert)
    connection = tomllib.loads((tmp_path / "home" / "config.toml").read_text())["superlink"]["fedledger"]
    assert connection == {"address": "10.0.0.1:9092", "root-certificates": str(files.ca_cert.resolve())}


def test_a_node_checks_both_servers_and_hands_its_clientapps_the_gateway_ca(tmp_path: Path) -> None:
    ca, key = tmp_path / "ca.pem", tmp_path / "node-auth"
    ca.write_text("pem")
    data = parse_data_spec("digits:0/2")
    command = supernode_command("10.0.0.1:9092", tmp_path / "agent.sock", data, "10.0.0.1:50051", ca,
                                gateway_ca=ca, auth_key=key)  # fmt: skip
    assert "--insecure" not in command
    assert command[command.index("--root-certificates") + 1] == str(ca.resolve())
    assert command[command.index("--auth-supernode-private-key") + 1] == str(key.resolve())
    assert f'gateway-ca="{ca.resolve()}"' in command[command.index("--node-config") + 1]
    plain = supernode_command("127.0.0.1:9092", tmp_path / "agent.sock", data, "127.0.0.1:50051", None)
    assert "--insecure" in plain and "gateway-ca" not in plain[plain.index("--node-config") + 1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"tls_cert": "cert.pem"}, "--tls-cert and --tls-key go together"),
        ({"tls_cert": "cert.pem", "tls_key": "key.pem"}, "needs --tls-ca"),
        ({"allow_nodes": ("missing.pub",)}, "missing.pub does not exist"),
    ],
)
def test_incomplete_tls_options_are_refused_with_the_reason(
    tmp_path: Path, flags: dict[str, object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("pem")
    with pytest.raises(ValidationError, match=message):
        CoordinatorOptions(keystore=tmp_path / "k.json", **flags)  # type: ignore[arg-type]


def test_the_coordinate_command_names_a_missing_tls_half_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("pem")
    done = fedledger("coordinate", "--keystore", "k.json", "--tls-cert", "cert.pem", cwd=tmp_path)
    assert done.returncode != 0
    assert "--tls-cert and --tls-key go together" in done.stderr and "Traceback" not in done.stderr
