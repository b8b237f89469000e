"""The command line: help, deploy on the embedded chain, and one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from fedledger.cli import main
from fedledger.deploy.anvil import free_port
from fedledger.deploy.manifest import DeploymentManifest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedledger.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("contracts", "deploy", "gateway", "node", "audit"):
        assert command in result.stdout


def test_deploy_embedded_json_prints_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "deployments" / "local.json"
    result = run_cli("deploy", "--embedded", "--json", "--vote-mode", "aggregate", "--rounds", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    manifest = DeploymentManifest.model_validate(json.loads(result.stdout))
    assert manifest.task.address.startswith("0x") and len(manifest.task.address) == 42
    assert manifest.task_config.vote_mode.label == "aggregate" and manifest.task_config.total_rounds == 3
    assert manifest.reward_pool_wei == 10 * 10**18
    assert all(g > 0 for g in manifest.gas_used.values())
    assert DeploymentManifest.load(out) == manifest


def test_deploy_embedded_with_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = Account.create()
    key_file = tmp_path / "deployer.key"
    key_file.write_text(key.key.hex())
    assert main(["deploy", "--embedded", "--json", "--key-file", str(key_file)]) == 0
    manifest = DeploymentManifest.model_validate_json(capsys.readouterr().out)
    assert manifest.deployer == key.address == manifest.task_config.coordinator


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "--rpc-url", "http://127.0.0.1:{port}"], "cannot reach a JSON-RPC node"),
        (["deploy", "--rpc-url", "ftp://x"], "unsupported RPC URL"),
        (["deploy", "--embedded", "--rounds", "0"], "total_rounds"),
        (["deploy", "--embedded", "--coordinator", "0x" + "00" * 20], "coordinator"),
        (["deploy", "--embedded", "--key-file", "/nonexistent/key"], "key file not found"),
        (["deploy", "--embedded", "--pool", "100000000"], "it needs the pool of 100000000.0 ETH plus"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    args = [a.format(port=free_port()) for a in args]
    result = run_cli(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_argument_errors_exit_2() -> None:
    result = run_cli("deploy", "--embedded", "--min-stake", "lots")
    assert result.returncode == 2 and "not an amount of ether" in result.stderr


def test_a_revert_becomes_one_line() -> None:
    from fedledger.cli import _user_error
    from fedledger.contracts.errors import ContractRevert

    revert = ContractRevert("WrongPhase", {"expected": 2, "actual": 1})
    assert _user_error(revert) == "transaction reverted: WrongPhase(expected=2, actual=1)"
    assert _user_error(RuntimeError("a bug")) is None  # bugs keep their traceback


@pytest.mark.anvil
def test_deploy_to_anvil_with_the_dev_key_writes_the_manifest(anvil_url: str, tmp_path: Path) -> None:
    out = tmp_path / "local.json"
    result = run_cli("deploy", "--rpc-url", anvil_url, "--out", str(out), "--vote-mode", "aggregate")
    assert result.returncode == 0, result.stderr
    assert "DEV KEY" in result.stderr
    manifest = DeploymentManifest.load(out)
    assert manifest.chain_id == 31337 and manifest.rpc_url == anvil_url
    assert manifest.deployer == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's first dev account
    from fedledger.contracts.bindings import FLTaskContract
    from fedledger.deploy.chain import connect

    task = FLTaskContract(connect(anvil_url), manifest.task.address)
    assert task.config() == manifest.task_config
    assert task.reward_pool() == manifest.reward_pool_wei


@pytest.mark.parametrize(
    ("args", "accepted"),
    [
        (["--attackers", "2", "--attack", "bogus"], ["label_flip", "sign_flip", "noise:SIGMA", "alie", "free_ride"]),
        (["--attackers", "2", "--attack", "noise:"], ["noise:0.5"]),
        (["--attackers", "2", "--voter-attack", "lazy"], ["random", "invert", "accept_all", "no_reveal", "collude"]),
        (["--attackers", "11", "--attack", "sign_flip"], ["between 0 and 9"]),
        (["--attackers", "2", "--attack", ""], ["--attack", "--voter-attack"]),
        (["--vote-rule", "majority"], ["share", "full", "loo", "reference"]),
        (["--strategy", "fedkseed", "--vote-rule", "reference"], ["not models", "share"]),
        (["--reviewers-per-update", "11"], ["--reviewers-per-update must be between 0 and 10"]),
        (["--quorum", "10"], ["--quorum must be between 1 and 9"]),
        (["--task", "cifar"], ["unknown task 'cifar'", "mnist", "ltdigits"]),
    ],
)
def test_simulate_refuses_bad_attacks_in_one_line_before_starting(
    tmp_path: Path, args: list[str], accepted: list[str]
) -> None:
    out = tmp_path / "run"
    result = run_cli("simulate", "--out", str(out), *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "Value error" not in result.stderr, result.stderr  # pydantic's wording stays inside
    for name in accepted:
        assert name in result.stderr, (name, result.stderr)
    assert not out.exists()  # nothing started


def test_deploy_takes_the_strategys_vote_rule_and_checks_a_given_one() -> None:
    default = run_cli("deploy", "--embedded", "--json")
    assert default.returncode == 0, default.stderr
    config = DeploymentManifest.model_validate(json.loads(default.stdout)).task_config
    assert config.vote_rule == "reference" and config.voter_reward_bps == 1_000 and config.slash_rate_bps == 2_000
    chosen = run_cli("deploy", "--embedded", "--json", "--vote-rule", "loo", "--voter-reward-bps", "2500")
    config = DeploymentManifest.model_validate(json.loads(chosen.stdout)).task_config
    assert config.vote_rule == "loo" and config.voter_reward_bps == 2_500
    refused = run_cli("deploy", "--embedded", "--json", "--strategy", "fedkseed", "--vote-rule", "reference")
    assert refused.returncode == 1 and "not models" in refused.stderr


def test_simulate_help_names_the_modules_values() -> None:
    """simulate's --help spells the accepted values itself (importing them would pull torch in)."""
    from fedledger.client.voting import RULES
    from fedledger.simulation import attacks, cli

    assert attacks.UPDATE_ATTACKS == cli.UPDATE_ATTACKS
    assert attacks.VOTER_ATTACKS == cli.VOTER_ATTACKS
    assert tuple(RULES) == cli.RULE_NAMES


def test_version_names_the_package_the_contracts_and_the_libraries() -> None:
    import importlib.metadata

    from fedledger import __version__

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"fedledger {__version__}"
    assert lines[1].startswith("contracts: 6 artifacts, bytecode keccak 0x") and "solc 0.8.30" in lines[1]
    for library in ("flwr", "web3", "torch"):
        assert f"{library} {importlib.metadata.version(library)}" in lines[2]


def test_version_fingerprint_follows_the_artifacts(tmp_path: Path) -> None:
    import shutil

    from fedledger import doctor
    from fedledger.contracts import artifacts

    same, changed = tmp_path / "same", tmp_path / "changed"
    shutil.copytree(artifacts.BUILD_DIR, same)
    shutil.copytree(artifacts.BUILD_DIR, changed)
    raw = json.loads((changed / "Registry.json").read_text())
    raw["bytecode"] = raw["bytecode"][:-2] + ("00" if raw["bytecode"][-2:] != "00" else "01")
    (changed / "Registry.json").write_text(json.dumps(raw))
    assert doctor.contracts_fingerprint(same) == doctor.contracts_fingerprint()
    assert doctor.contracts_fingerprint(changed) != doctor.contracts_fingerprint()


def test_doctor_passes_on_this_machine_and_names_the_fix_for_what_is_missing(tmp_path: Path) -> None:
    ok = run_cli("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(ok.stdout)}
    assert ok.returncode == 0, [c for c in checks.values() if c["status"] == "missing"]
    assert {"Python", "torch", "flwr", "web3", "contracts", "Node.js", "solcjs", "OpenZeppelin", "anvil"} <= set(checks)
    assert "CPU build" in checks["torch"]["detail"]
    table = run_cli("doctor")
    assert table.returncode == 0 and "everything it needs is here" in table.stdout and "…" not in table.stdout

    empty = tmp_path / "node_modules"
    empty.mkdir()
    (empty / "solc").mkdir()
    (empty / "solc" / "package.json").write_text('{"version": "0.8.20"}')
    with socket.socket() as held:  # a busy default port is a warning with its fix, not a failure
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, "FEDLEDGER_NODE_MODULES": str(empty)}
        probe = (
            f"import json; from fedledger import doctor; doctor.PORTS = {{{port}: 'a test'}};"
            "print(json.dumps([c.model_dump() for c in doctor.run_checks()]))"
        )
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    found = {c["name"]: c for c in json.loads(result.stdout)}
    assert found["solcjs"]["status"] == "missing" and "npm ci" in found["solcjs"]["fix"]
    assert "0.8.20" in found["solcjs"]["detail"]
    assert found["OpenZeppelin"]["status"] == "missing"
    assert found[f"port {port}"]["status"] == "warning" and f"127.0.0.1:{port}" in found[f"port {port}"]["fix"]


def test_simulate_attacks_by_default_and_attackers_0_is_the_clean_run() -> None:
    from fedledger.cli import build_parser
    from fedledger.simulation.cli import options_from

    parser = build_parser()
    default = options_from(parser.parse_args(["simulate"]))
    assert (default.attackers, default.attack, default.clients, default.rounds) == (2, "sign_flip", 10, 5)
    clean = options_from(parser.parse_args(["simulate", "--attackers", "0"]))
    assert (clean.attackers, clean.attack, clean.voter_attack) == (0, "", "honest")
    voters = options_from(parser.parse_args(["simulate", "--attack", "none", "--voter-attack", "collude"]))
    assert (voters.attackers, voters.attack, voters.voter_attack) == (2, "none", "collude")
    few = [options_from(parser.parse_args(["simulate", "--clients", str(n)])).attackers for n in (2, 4, 5, 12, 40)]
    assert few == [0, 0, 1, 2, 8]  # a fifth, rounded down: always a minority, none in the smallest runs
