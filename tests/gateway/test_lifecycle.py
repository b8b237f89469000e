"""A participant's life in the CLI: stake, withdraw, exit, status, and the owner's pool funding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.client.lifecycle import GatewayBackend, add_stake, exit_task, fund_pool, my_rounds, withdraw
from fedledger.deploy.chain import advance_time
from fedledger.errors import CommandError
from fedledger.keys import create_keystore
from tests.conftest import fedledger
from tests.gateway.conftest import ETH, Gateway, start_gateway

PASSWORD = "correct horse battery"


@pytest.fixture
def life(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway whose task lets members complete an exit 3 s after asking."""
    gateway = start_gateway(tmp_path / "gateway", exit_delay=3, total_rounds=3)
    try:
        yield gateway
    finally:
        gateway.client.close()
        gateway.server.stop(grace=1)


def _wait_out_the_exit_delay(gw: Gateway) -> None:
    """Move the embedded chain past the 3 s exit delay (its blocks run ahead of the wall clock)."""
    gw.ledger.run(lambda: advance_time(gw.ledger.w3, 4))
    gw.ledger.invalidate()


def _events(gw: Gateway) -> int:
    return len(gw.client.events())


def _refused(gw: Gateway, action: object, match: str) -> None:
    """``action`` fails with a CommandError saying ``match`` and sends nothing."""
    before = _events(gw)
    with pytest.raises(CommandError, match=match):
        action()  # type: ignore[operator]
    assert _events(gw) == before


def test_stake_withdraw_exit_and_fund_through_the_gateway(life: Gateway) -> None:
    gw = life
    gw.register_all()
    member = GatewayBackend(gw.client, gw.participants[0])
    stranger = GatewayBackend(gw.client, gw.coordinator)
    _refused(gw, lambda: add_stake(stranger, ETH), "is not a member")
    _refused(gw, lambda: add_stake(member, 0), "positive")
    _refused(gw, lambda: add_stake(member, 10**6 * ETH), "less than")
    assert "-> 3 ETH" in add_stake(member, ETH)
    assert member.member().stake == 3 * ETH
    _refused(gw, lambda: withdraw(member), "nothing to withdraw")
    _refused(gw, lambda: exit_task(stranger), "is not a member")
    pool = int(gw.client.task_info().reward_pool_wei)
    assert "added 2 ETH" in fund_pool(stranger, 2 * ETH)
    assert int(gw.client.task_info().reward_pool_wei) == pool + 2 * ETH
    # Leaving: the first call asks, the next ones say how long is left, then complete and pay.
    assert "exit requested" in exit_task(member)
    assert member.member().exiting
    _refused(gw, lambda: add_stake(member, ETH), "asked to exit")
    _refused(gw, lambda: exit_task(member), "not due yet: 0m 0[0-3]s left")
    _wait_out_the_exit_delay(gw)
    balance = member.balance()
    message = exit_task(member)
    assert "withdrew 3 ETH" in message
    info = member.member()
    assert (info.registered, info.stake, info.owed) == (False, 0, 0)
    assert member.balance() == balance + 3 * ETH  # the gateway paid the gas of the relayed actions
    # The event-derived balances followed the top-up, the exit (stake credited) and the withdrawal.
    everyone = [k.address for k in gw.participants]
    assert gw.client.balances(everyone) == {
        a: (int(gw.client.account(a).stake_wei), int(gw.client.account(a).owed_wei)) for a in everyone
    }
    _refused(gw, lambda: exit_task(member), "is not a member")


def test_an_exit_waits_for_the_round_that_holds_the_member(life: Gateway) -> None:
    gw = life
    gw.register_all()
    roles = gw.open()
    seated = next(k for k in gw.participants if k.address == roles.voters[0])
    backend = GatewayBackend(gw.client, seated)
    exit_task(backend)
    _wait_out_the_exit_delay(gw)
    _refused(gw, lambda: exit_task(backend), "holds a seat in round 1, which is still training")
    # The round goes on and finishes; the node's rounds show in its status.
    gw.submit_all(roles)
    gw.vote_all(roles, 0b111)
    gw.reveal_all(roles, 0b111)
    rounds = my_rounds(backend.history(), seated.address)
    assert [(r.round, r.role, r.acted, r.outcome) for r in rounds] == [(1, "voter", "revealed", "winning side")]
    assert rounds[0].rewarded_wei > 0
    assert "withdrew" in exit_task(backend)


def test_the_commands_print_one_line_and_exit_1_on_bad_input(life: Gateway, tmp_path: Path) -> None:
    gw = life
    gw.register_all()
    keystore = tmp_path / "node.json"
    key = create_keystore(keystore, PASSWORD)
    env = {"FEDLEDGER_KEY_PASSWORD": PASSWORD}
    where = ["--gateway", gw.server.address, "--keystore", str(keystore)]
    before = _events(gw)
    refused = fedledger("node", "stake", "--add", "1", *where, env=env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0 and "is not a member" in refused.stderr
    assert fedledger("node", "withdraw", *where, env=env).returncode == 1
    assert _events(gw) == before
    status = fedledger("node", "status", "--gateway", gw.server.address, "--address", key.address, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["registered"] is False and data["rounds"] == [] and data["current_round"] == 0
