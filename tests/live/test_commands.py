"""The live-federation commands' own checks: data specs, chain up/down, joining, the coordinator's refusals."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from fedledger.client.data import DataSpecError, parse_data_spec
from fedledger.client.join import ensure_member
from fedledger.deploy.anvil import free_port
from fedledger.errors import CommandError
from fedledger.server.coordinator.coordinate import Coordinator, CoordinatorError, CoordinatorOptions
from fedledger.simulation.tasks import get_task

from ..conftest import fedledger, require_anvil
from ..gateway.conftest import ETH, Gateway

PASSWORD = "a long enough password"


def test_a_demo_partition_is_the_simulated_clients_share() -> None:
    task = get_task("digits")
    spec = parse_data_spec("digits:1/3")
    assert spec.partition_id == 1 and str(spec) == "digits:1/3"
    live = spec.load(task, "iid", 0)
    simulated = task.client_data(1, 3, "iid", 0)
    assert np.array_equal(live.train.x, simulated.train.x) and np.array_equal(live.val.y, simulated.val.y)
    with pytest.raises(DataSpecError, match="trains 'ltdigits'"):
        spec.load(get_task("ltdigits"), "iid", 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digits:3/3", "INDEX must be in 0..COUNT-1"),
        ("nosuch:0/3", "nosuch"),
        ("data.csv", "TASK:INDEX/COUNT"),
        ("missing.npz", "not found"),
    ],
)
def test_bad_data_specs_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(DataSpecError, match=message):
        parse_data_spec(text)


def test_a_data_file_is_checked_against_the_task(tmp_path: Path) -> None:
    task = get_task("digits")
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 64), dtype=np.float32), rng.integers(0, 10, 40)
    good = tmp_path / "mine.npz"
    np.savez(good, x_train=x[:30], y_train=y[:30], x_val=x[30:], y_val=y[30:])
    data = parse_data_spec(str(good)).load(task, "iid", 0)
    assert len(data.train) == 30 and len(data.val) == 10 and data.test is None and data.train.y.dtype == np.int64
    assert parse_data_spec(str(good)).partition_id == -1
    cases = {
        "shape.npz": ({"x_train": x[:, :32], "y_train": y, "x_val": x[:, :32], "y_val": y}, "shaped"),
        "labels.npz": ({"x_train": x, "y_train": y + 10, "x_val": x, "y_val": y}, r"0\.\.9"),
        "missing.npz": ({"x_train": x, "y_train": y}, "lacks the arrays x_val, y_val"),
        "empty.npz": ({"x_train": x[:0], "y_train": y[:0], "x_val": x, "y_val": y}, "must not be empty"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataSpecError, match=message):
            parse_data_spec(str(tmp_path / name)).load(task, "iid", 0)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataSpecError, match="cannot read"):
        parse_data_spec(str(tmp_path / "junk.npz")).load(task, "iid", 0)


def test_joining_registers_once_tops_up_and_names_the_fund_command(gw: Gateway) -> None:
    key = gw.participants[0]
    first = ensure_member(gw.client, key, None)
    assert first.registered_now and first.stake_wei == gw.client.task().config.min_stake
    again = ensure_member(gw.client, key, 3 * ETH)
    assert not again.registered_now and again.added_wei == 3 * ETH - first.stake_wei and again.stake_wei == 3 * ETH
    assert ensure_member(gw.client, key, None).added_wei == 0  # already above the minimum: nothing sent
    with pytest.raises(CommandError, match="fedledger chain fund"):
        ensure_member(gw.client, Account.create(), None)
    with pytest.raises(CommandError, match="at least the task's minimum"):
        ensure_member(gw.client, gw.participants[1], 1)


def _keystore(path: Path, key: bytes) -> Path:
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD)))
    return path


def test_the_coordinator_refuses_a_foreign_key_and_another_initial_model(
    gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDLEDGER_KEY_PASSWORD", PASSWORD)
    address = gw.server.address
    stranger = _keystore(tmp_path / "stranger.json", Account.create().key)
    with pytest.raises(CoordinatorError, match="the task's coordinator is"):
        Coordinator(CoordinatorOptions(gateway=address, keystore=stranger, out=tmp_path / "a")).run()
    mine = _keystore(tmp_path / "coordinator.json", gw.coordinator.key)
    with pytest.raises(CoordinatorError, match="--initial-model digits:0"):
        Coordinator(CoordinatorOptions(gateway=address, keystore=mine, out=tmp_path / "b")).run()
    with pytest.raises(CoordinatorError, match="rounds left"):
        Coordinator(CoordinatorOptions(gateway=address, keystore=mine, rounds=99, out=tmp_path / "c")).run()


def test_chain_up_and_down_keep_the_state_and_stop_only_what_they_started(tmp_path: Path) -> None:
    require_anvil()
    port = free_port()
    up = fedledger("chain", "up", "--port", str(port), "--state", "state.json", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"http://127.0.0.1:{port}"
    record = json.loads((tmp_path / ".fedledger" / "chain.json").read_text())
    try:
        twice = fedledger("chain", "up", "--port", str(free_port()), cwd=tmp_path)
        assert twice.returncode == 1 and "already runs" in twice.stderr
        funded = fedledger("chain", "fund", "--rpc-url", up.stdout.strip(), Account.create().address, cwd=tmp_path)
        assert funded.returncode == 0 and "10.0000 ETH" in funded.stdout
    finally:
        down = fedledger("chain", "down", cwd=tmp_path)
    assert down.returncode == 0 and f"pid {record['pid']}" in down.stdout
    assert (
        not Path(f"/proc/{record['pid']}").exists()
        or b"anvil" not in Path(f"/proc/{record['pid']}/cmdline").read_bytes()
    )
    assert (tmp_path / "state.json").stat().st_size > 0  # anvil saved the chain on the way down
    assert "no running chain" in fedledger("chain", "down", cwd=tmp_path).stdout


def test_chain_up_without_anvil_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedledger.deploy import anvil
    from fedledger.deploy.localchain import chain_up

    monkeypatch.setattr(anvil, "find_anvil", lambda: None)
    with pytest.raises(FileNotFoundError, match="npm ci"):
        chain_up(tmp_path, free_port())


def test_the_coordinator_continues_after_settled_rounds_from_the_chains_model_but_not_mid_round(
    gw: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedledger import codec
    from fedledger.server.coordinator.app import _starting_state

    from ..gateway.test_audit import play

    monkeypatch.setenv("FEDLEDGER_KEY_PASSWORD", PASSWORD)
    mine = _keystore(tmp_path / "coordinator.json", gw.coordinator.key)
    play(gw)  # round 1: finalized, its aggregate published
    info = gw.client.task_info()
    options = CoordinatorOptions(gateway=gw.server.address, keystore=mine, out=tmp_path / "a")
    settings = Coordinator(options)._settings(PASSWORD)
    assert settings.rounds == gw.client.task().config.total_rounds - 1
    start = _starting_state(gw.client, gw.coordinator, info.current_round, info.global_model_hash, OrderedDict())
    assert codec.encode(start) == gw.client.fetch_blob(info.global_model_hash)  # the published aggregate
    gw.open()  # round 2 starts, and the coordinator stops before it is settled
    with pytest.raises(CoordinatorError, match="round 2 was cut off in phase TRAINING"):
        Coordinator(options)._settings(PASSWORD)


@pytest.mark.anvil
def test_the_lifecycle_commands_go_straight_to_a_json_rpc_node(anvil_url: str, tmp_path: Path) -> None:
    """``node stake`` / ``status`` / ``exit`` and ``task fund`` with ``--rpc-url`` (no gateway), on anvil."""
    from fedledger.client.lifecycle import RpcBackend, exit_task
    from fedledger.contracts.types import TaskConfig
    from fedledger.deploy.chain import connect, dev_accounts
    from fedledger.deploy.deployer import deploy_task
    from fedledger.keys import create_keystore

    w3 = connect(anvil_url)
    keys = dev_accounts(w3, 4)
    config = TaskConfig(initial_model_hash=b"\1" * 32, coordinator=keys[0].address, exit_delay=0)
    manifest, task = deploy_task(w3, keys[0].address, config, pool_wei=ETH, rpc_url=anvil_url)
    deployment = tmp_path / "deployment.json"
    manifest.save(deployment)
    keystore = tmp_path / "member.json"
    member = create_keystore(keystore, PASSWORD)
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": keys[1].address, "to": member.address, "value": 10 * ETH})
    )
    where = ["--rpc-url", anvil_url, "--deployment", str(deployment), "--keystore", str(keystore)]
    env = {"FEDLEDGER_KEY_PASSWORD": PASSWORD}
    refused = fedledger("node", "stake", "--add", "1", *where, env=env)
    assert refused.returncode == 1 and "is not a member" in refused.stderr
    backend = RpcBackend(anvil_url, deployment, member)
    backend.task.register(member.address, 2 * ETH)
    staked = fedledger("node", "stake", "--add", "1.5", *where, env=env)
    assert staked.returncode == 0, staked.stderr
    assert task.member(member.address).stake == 35 * ETH // 10
    funded = fedledger("task", "fund", "--pool", "2", *where, env=env)
    assert funded.returncode == 0 and task.reward_pool() == 3 * ETH
    status = fedledger("node", "status", "--rpc-url", anvil_url, "--deployment", str(deployment),
                       "--keystore", str(keystore), "--json")  # fmt: skip
    assert json.loads(status.stdout)["stake_wei"] == 35 * ETH // 10
    assert "exit requested" in exit_task(backend)
    assert "withdrew 3.5 ETH" in exit_task(backend)  # no exit delay in this task
    assert not task.member(member.address).registered and task.member(member.address).owed == 0
