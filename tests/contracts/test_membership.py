"""Membership: register, stake, fund, exit and withdraw, with every revert path."""

from __future__ import annotations

import pytest

from fedledger.contracts.types import Phase, Role
from fedledger.deploy.chain import embedded_web3
from tests.conftest import ETH, Harness, make_harness


def test_register_records_stake_and_emits(h: Harness) -> None:
    a = h.addresses[0]
    sent = h.task.register(a, 3 * ETH)
    assert [e.name for e in sent.events] == ["Registered"]
    assert sent.events[0].args == {"account": a, "index": 0, "stake": 3 * ETH}
    info = h.task.member(a)
    assert (info.registered, info.stake, info.owed, info.exiting, info.index) == (True, 3 * ETH, 0, False, 0)
    assert h.task.members() == [a] and h.task.member_at(0) == a and h.task.member_at(1) is None
    assert h.task.eligibility() == [1]
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
    assert a not in h.task.eligible_members() and h.task.eligibility() == [0b1110]
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
    assert h.task.role_of(1, member)[0] is Role.PROPOSER
    h.task.finalize_round(h.coordinator, 1)
    slashed_stake = 2 * ETH - 2 * ETH * 1_000 // 10_000
    assert h.task.member(member).stake == slashed_stake
    h.task.complete_exit(member)
    assert h.task.member(member).owed == slashed_stake
    assert h.task.role_of(1, member)[0] is Role.NONE  # no longer a member


def test_an_exit_frees_its_index_for_the_next_member(h: Harness) -> None:
    members = h.register(5)
    h.task.request_exit(members[1])
    h.advance(3_600)
    sent = h.task.complete_exit(members[1])
    assert sent.named("Exited")[0].args == {"account": members[1], "stake": 2 * ETH}
    assert h.task.members() == [members[0], *members[2:]] and h.task.member_at(1) is None
    assert h.task.eligibility() == [0b11101]
    newcomer = h.addresses[7]
    sent = h.task.register(newcomer, 2 * ETH)
    assert sent.named("Registered")[0].args["index"] == 1  # the lowest free index
    assert h.task.member_at(1) == newcomer and h.task.eligibility() == [0b11111]
    # The remaining members keep their indices and can still exit cleanly.
    h.task.request_exit(members[4])
    h.advance(3_600)
    h.task.complete_exit(members[4])
    assert h.task.members() == [members[0], newcomer, members[2], members[3]]


def test_slashed_below_the_minimum_is_ineligible_until_topped_up(deploy: object) -> None:
    h: Harness = deploy(slash_rate_bps=6_000, max_committee=4, min_stake=ETH)  # type: ignore[operator]
    h.register(4, stake=2 * ETH)
    opened = h.open()
    h.advance(601)
    h.task.advance_phase(h.coordinator, 1)
    h.task.finalize_round(h.coordinator, 1)  # no proposer committed: each loses 60 % of 2 ETH
    for p in opened.proposers:
        assert h.task.member(p).stake == 8 * ETH // 10
        assert p not in h.task.eligible_members()
    h.task.add_stake(opened.proposers[0], ETH // 5)
    assert opened.proposers[0] in h.task.eligible_members()


@pytest.mark.slow
def test_task_full_at_1024_members_and_the_draw_reaches_every_word() -> None:
    w3 = embedded_web3(num_accounts=1028)
    h = make_harness(w3, max_committee=120, proposer_share_bps=5_000)
    register = h.task.contract.functions.register()
    for account in h.participants[:1024]:  # straight transactions: the binding's trial call would double the time
        register.transact({"from": account.address, "value": ETH, "gas": 400_000})
    assert [bin(w).count("1") for w in h.task.eligibility()] == [256, 256, 256, 256]
    late = h.participants[1024].address
    h.expect_revert("TaskFull", lambda: h.task.register(late, ETH), maxMembers=1024)
    opened = h.open()
    assert len(opened.committee) == 120 and len(set(opened.committee)) == 120
    assert {index >> 8 for index in opened.committee} == {0, 1, 2, 3}
