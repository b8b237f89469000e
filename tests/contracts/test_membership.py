"""Membership: register, stake, fund, exit and withdraw, with every revert path."""

from __future__ import annotations

import pytest

from fedledger.contracts.types import Phase, Role
from fedledger.deploy.chain import embedded_web3
from tests.conftest import ETH, Harness, make_harness


def test_register_records_stake_and_emits(h: Harness) -> None:
    a = h.addresses[0]
    sent = h.task.register(a, 3 * ETH)
    assert [e.name for e in sent.events] == ["Registered", "StakeChanged"]
    assert sent.events[0].args == {"account": a, "stake": 3 * ETH}
    assert sent.events[1].args == {"account": a, "oldStake": 0, "newStake": 3 * ETH}
    info = h.task.member(a)
    assert (info.registered, info.stake, info.owed, info.exiting) == (True, 3 * ETH, 0, False)
    assert h.task.members() == [a]
    assert h.task.balance() == 100 * ETH + 3 * ETH


def test_register_rejects_twice_short_and_zero_stake(h: Harness) -> None:
    a, b = h.addresses[:2]
    h.task.register(a, 2 * ETH)
    h.expect_revert("AlreadyRegistered", lambda: h.task.register(a, 2 * ETH), account=a)
    h.expect_revert("InsufficientStake", lambda: h.task.register(b, ETH - 1), amount=ETH - 1, minimum=ETH)
    h.expect_revert("InsufficientStake", lambda: h.task.register(b, 0), amount=0, minimum=ETH)


def test_add_stake_and_its_reverts(h: Harness) -> None:
    a, b = h.addresses[:2]
    h.task.register(a, 2 * ETH)
    sent = h.task.add_stake(a, ETH)
    assert sent.named("StakeChanged")[0].args == {"account": a, "oldStake": 2 * ETH, "newStake": 3 * ETH}
    assert h.task.member(a).stake == 3 * ETH
    h.expect_revert("NotMember", lambda: h.task.add_stake(b, ETH), account=b)
    h.expect_revert("ZeroAmount", lambda: h.task.add_stake(a, 0))
    h.task.request_exit(a)
    h.expect_revert("ExitPending", lambda: h.task.add_stake(a, ETH), account=a)


def test_fund_pool(h: Harness) -> None:
    sent = h.task.fund_pool(h.addresses[0], 5 * ETH)
    assert sent.named("PoolFunded")[0].args == {"from": h.addresses[0], "amount": 5 * ETH}
    assert h.task.reward_pool() == 105 * ETH
    h.expect_revert("ZeroAmount", lambda: h.task.fund_pool(h.addresses[0], 0))


def test_exit_rules(h: Harness) -> None:
    members = h.register(4)
    a, b = members[:2]
    outsider = h.addresses[10]
    h.expect_revert("NotMember", lambda: h.task.request_exit(outsider), account=outsider)
    h.expect_revert("ExitNotRequested", lambda: h.task.complete_exit(a), account=a)
    sent = h.task.request_exit(a)
    ready = sent.named("ExitRequested")[0].args["readyAt"]
    assert h.task.member(a).exiting and h.task.member(a).exit_ready_at == ready
    assert a not in h.task.eligible_members()
    h.expect_revert("ExitPending", lambda: h.task.request_exit(a), account=a)
    h.expect_revert("ExitDelayNotOver", lambda: h.task.complete_exit(a), readyAt=ready)
    h.advance(3_600)
    sent = h.task.complete_exit(a)
    assert sent.named("Exited")[0].args == {"account": a, "stake": 2 * ETH}
    info = h.task.member(a)
    assert (info.registered, info.stake, info.owed) == (False, 0, 2 * ETH)
    assert a not in h.task.members() and len(h.task.members()) == 3
    h.expect_revert("NotMember", lambda: h.task.complete_exit(a), account=a)
    # The stake is paid by withdraw, exactly once.
    before = h.w3.eth.get_balance(a)
    sent = h.task.withdraw(a)
    gas_cost = sent.gas_used * sent.receipt["effectiveGasPrice"]
    assert h.w3.eth.get_balance(a) == before + 2 * ETH - gas_cost
    assert sent.named("Withdrawn")[0].args == {"account": a, "amount": 2 * ETH}
    h.expect_revert("NothingToWithdraw", lambda: h.task.withdraw(a), account=a)
    # A former member may join again.
    h.task.register(a, ETH)
    assert h.task.member(a).registered
    assert b in h.task.members()


def test_exit_blocked_while_active_in_round(h: Harness) -> None:
    h.register(4)
    opened = h.open()
    member = opened.proposers[0]
    h.task.request_exit(member)
    h.advance(3_601)
    h.expect_revert("ActiveInRound", lambda: h.task.complete_exit(member), round=1)
    # Once the round is finalized the exit goes through (after being settled: it never committed).
    h.advance(601)
    h.task.advance_phase(h.coordinator, 1)
    assert h.phase() is Phase.REVEALING  # nothing was committed, so voting is skipped
    h.task.finalize_round(h.coordinator, 1)
    slashed_stake = 2 * ETH - 2 * ETH * 1_000 // 10_000
    assert h.task.member(member).stake == slashed_stake
    h.task.complete_exit(member)
    assert h.task.member(member).owed == slashed_stake
    assert h.task.role_of(1, member)[0] is Role.PROPOSER


def test_removing_a_member_keeps_positions_consistent(h: Harness) -> None:
    members = h.register(5)
    h.task.request_exit(members[1])
    h.advance(3_600)
    h.task.complete_exit(members[1])
    assert sorted(h.task.members()) == sorted(m for m in members if m != members[1])
    # The moved member can still exit cleanly (its stored position was updated).
    moved = members[4]
    h.task.request_exit(moved)
    h.advance(3_600)
    h.task.complete_exit(moved)
    assert sorted(h.task.members()) == sorted([members[0], members[2], members[3]])


@pytest.mark.slow
def test_task_full_at_max_members() -> None:
    w3 = embedded_web3(num_accounts=260)
    h = make_harness(w3)
    for account in h.participants[:256]:
        h.task.register(account.address, ETH)
    late = h.participants[256].address
    h.expect_revert("TaskFull", lambda: h.task.register(late, ETH), maxMembers=256)
