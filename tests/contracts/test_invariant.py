"""Stateful property: the contract always holds exactly stakes + reward pool + credited balances."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fedledger.contracts import typed_data as td
from fedledger.contracts.errors import ContractRevert
from fedledger.contracts.types import EJECT_STANDING, Phase, Role
from fedledger.deploy.chain import embedded_web3
from tests.conftest import ETH, Harness, make_harness, model_hash

PARTICIPANTS = 8
idx = st.integers(0, PARTICIPANTS - 1)
wei = st.integers(0, 30).map(lambda tenths: tenths * ETH // 10)


class TaskMachine(RuleBasedStateMachine):
    """Random sequences of every action, valid or not, against one task."""

    h: Harness

    @initialize(
        mode=st.sampled_from(["per_update", "aggregate"]),
        stake_weighted=st.booleans(),
        reviewers=st.integers(0, 2),
        stakes=st.lists(st.integers(10, 30), min_size=2, max_size=6),
    )
    def deploy_and_register(self, mode: str, stake_weighted: bool, reviewers: int, stakes: list[int]) -> None:
        self.h = make_harness(
            embedded_web3(num_accounts=PARTICIPANTS + 2),
            pool=10 * ETH,
            slash_rate_bps=3_000,
            exit_delay=100,
            total_rounds=4,
            vote_mode=mode,
            stake_weighted=stake_weighted,
            reviewers_per_update=reviewers,
        )
        self.h.register(len(stakes), stake=[s * ETH // 10 for s in stakes])
        self.current_phase = Phase.NONE

    def phase(self) -> Phase:
        """The current round's phase as of the last action (preconditions must not query the chain)."""
        return self.current_phase

    def refresh_phase(self) -> None:
        self.current_phase = self.h.task.round_info().phase

    def in_phase(*phases: Phase):  # type: ignore[no-untyped-def]
        """Precondition: the current round is in one of ``phases`` (keeps random runs deep)."""
        return precondition(lambda self: self.phase() in phases)

    def attempt(self, action: object) -> None:
        # Invalid actions must revert cleanly; the invariants check that nothing leaked.
        with contextlib.suppress(ContractRevert):
            action()  # type: ignore[operator]
        self.refresh_phase()

    def who(self, i: int) -> str:
        return self.h.addresses[i]

    def round(self) -> int:
        return self.h.task.current_round()

    def pick(self, role: Role, i: int, valid: bool) -> str:
        """A holder of ``role`` in the current round (index ``i`` modulo), or any participant."""
        if valid and self.round():
            proposers, voters = self.h.task.committee()
            holders = proposers if role is Role.PROPOSER else voters
            if holders:
                return holders[i % len(holders)]
        return self.who(i)

    @rule(i=idx, stake=wei)
    def register(self, i: int, stake: int) -> None:
        self.attempt(lambda: self.h.task.register(self.who(i), stake))

    @rule(i=idx, amount=wei)
    def add_stake(self, i: int, amount: int) -> None:
        self.attempt(lambda: self.h.task.add_stake(self.who(i), amount))

    @rule(i=idx, amount=wei)
    def fund_pool(self, i: int, amount: int) -> None:
        self.attempt(lambda: self.h.task.fund_pool(self.who(i), amount))

    @rule(i=idx)
    def request_exit(self, i: int) -> None:
        self.attempt(lambda: self.h.task.request_exit(self.who(i)))

    @rule(i=idx)
    def complete_exit(self, i: int) -> None:
        self.attempt(lambda: self.h.task.complete_exit(self.who(i)))

    @rule(i=idx, relayed=st.booleans())
    def withdraw(self, i: int, relayed: bool) -> None:
        if relayed:
            member = self.who(i)
            msg = td.member_message(member, self.h.task.nonce(member), self.h.deadline())
            self.attempt(lambda: self.h.task.relay(self.h.relayer, [self.h.sign(td.WITHDRAW, msg)]))
        else:
            self.attempt(lambda: self.h.task.withdraw(self.who(i)))

    @in_phase(Phase.NONE, Phase.FINALIZED)
    @rule()
    def open_round(self) -> None:
        self.attempt(lambda: self.h.open())

    @in_phase(Phase.TRAINING)
    @rule(i=idx, examples=st.integers(0, 3), valid=st.booleans(), relayed=st.booleans())
    def commit_update(self, i: int, examples: int, valid: bool, relayed: bool) -> None:
        r, proposer = self.round(), self.pick(Role.PROPOSER, i, valid)
        if relayed:  # the batch form: a bad entry is skipped, never reverting
            msg = td.commit_update_message(proposer, r, model_hash(f"{r}-{i}"), examples)
            self.attempt(lambda: self.h.task.relay(self.h.relayer, [self.h.sign(td.COMMIT_UPDATE, msg)]))
        else:
            self.attempt(lambda: self.h.task.commit_update(proposer, r, model_hash(f"{r}-{i}"), examples))

    @precondition(lambda self: self.h.config.vote_mode.label == "aggregate" and self.phase() is Phase.TRAINING)
    @rule(open_next=st.booleans())
    def propose_aggregate(self, open_next: bool) -> None:
        self._propose(open_next)

    def _propose(self, open_next: bool) -> None:
        r = self.round()
        self.attempt(
            lambda: self.h.task.propose_aggregate(self.h.coordinator, r, model_hash(f"agg-{r}"), open_next=open_next)
        )

    @in_phase(Phase.VOTING)
    @rule(i=idx, bits=st.integers(0, 3), valid=st.booleans())
    def commit_vote(self, i: int, bits: int, valid: bool) -> None:
        voter = self.pick(Role.VOTER, i, valid)
        self.attempt(lambda: self.h.commit_vote(voter, bits))

    @in_phase(Phase.REVEALING)
    @rule(i=idx, bits=st.integers(0, 3), honest=st.booleans())
    def reveal_vote(self, i: int, bits: int, honest: bool) -> None:
        voter, r = self.pick(Role.VOTER, i, True), self.round()
        if honest and (r, voter) in self.h.salts:
            self.attempt(lambda: self.h.reveal_vote(voter, bits))  # may still mismatch the committed bits
        else:
            self.attempt(lambda: self.h.task.reveal_vote(voter, r, bits, b"\x01" * 32))

    @in_phase(Phase.NONE, Phase.FINALIZED)
    @rule(
        commit_mask=st.integers(0, 15),
        bits=st.lists(st.integers(0, 15), max_size=8),
        reveal_mask=st.integers(0, 255),
    )
    def play_round(self, commit_mask: int, bits: list[int], reveal_mask: int) -> None:
        """A whole round in one step: some commit, some vote, some reveal; then finalize and publish."""
        try:
            opened = self.h.open()
        except ContractRevert:
            return
        self.refresh_phase()
        r = opened.round
        for i, p in enumerate(opened.proposers):
            if commit_mask >> i & 1:
                self.attempt(lambda p=p: self.h.commit_update(p))
        if self.h.config.vote_mode.label == "aggregate":
            self._propose(False)
        if self.phase() is Phase.TRAINING:
            self.advance(700)
        items = [len(self.h.task.items_of(j)) for j in range(len(opened.voters))]
        for j, (v, b) in enumerate(zip(opened.voters, bits, strict=False)):
            self.attempt(lambda v=v, b=b, j=j: self.h.commit_vote(v, b % (1 << items[j])))
        if self.phase() is Phase.VOTING:
            self.advance(700)
        for j, v in enumerate(opened.voters):
            if reveal_mask >> j & 1 and (r, v) in self.h.salts and j < len(bits):
                self.attempt(lambda v=v, j=j: self.h.reveal_vote(v, bits[j] % (1 << items[j])))
        self.h.advance(400)
        self.refresh_phase()
        if self.phase() is Phase.REVEALING:
            self.finalize()
        self.publish()

    @in_phase(Phase.TRAINING, Phase.VOTING, Phase.REVEALING)
    @rule(seconds=st.sampled_from([0, 150, 700]))
    def advance(self, seconds: int) -> None:
        if seconds:
            self.h.advance(seconds)
        self.attempt(lambda: self.h.task.advance_phase(self.h.coordinator, self.round()))

    @in_phase(Phase.REVEALING)
    @rule()
    def finalize(self) -> None:
        self.attempt(lambda: self.h.task.finalize_round(self.h.coordinator, self.round()))

    @in_phase(Phase.FINALIZED)
    @rule()
    def publish(self) -> None:
        r = self.round()
        self.attempt(lambda: self.h.task.publish_global(self.h.coordinator, r, model_hash(f"global-{r}")))

    @in_phase(Phase.FINALIZED)
    @rule()
    def publish_and_open(self) -> None:
        r = self.round()
        self.attempt(lambda: self.h.task.publish_and_open(self.h.coordinator, r, model_hash(f"global-{r}")))

    @invariant()
    def balance_is_fully_accounted(self) -> None:
        h = self.h
        assert h.task.balance() == h.stake_sum() + h.task.reward_pool() + h.owed_sum()

    @precondition(lambda self: self.phase() is not Phase.NONE)
    @invariant()
    def round_counters_are_consistent(self) -> None:
        info = self.h.task.round_info()
        assert info.num_updates <= info.num_proposers and info.num_reveals <= info.num_vote_commits <= info.num_voters
        assert info.num_updates == info.committed_mask.bit_count()
        assert info.revealed_mask & ~info.vote_committed_mask == 0
        assert info.num_vote_commits == info.vote_committed_mask.bit_count()

    @invariant()
    def eligibility_follows_the_members(self) -> None:
        h = self.h
        eligible = {
            a
            for a in h.task.members()
            if not (m := h.task.member(a)).exiting and m.stake >= h.config.min_stake and m.standing < EJECT_STANDING
        }
        assert set(h.task.eligible_members()) == eligible


@pytest.mark.slow
def test_balance_invariant_under_random_actions() -> None:
    TaskMachine.TestCase.settings = settings(
        max_examples=4, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
    )
    TaskMachine.TestCase().runTest()
