"""Canaries on chain: seals, the lottery, the declaration window, the coordinator's countersignature, settlement."""

from __future__ import annotations

import dataclasses
from typing import Any

from eth_utils import keccak

from fedledger.audit.replay import replay
from fedledger.contracts import typed_data as td
from fedledger.contracts.bindings import Sent
from fedledger.contracts.canary import CanaryChain, lottery
from fedledger.contracts.types import EJECT_STANDING, SlashReason, encode_vote
from fedledger.deploy.chain import dev_accounts
from tests.conftest import ETH, Harness


def _chains(h: Harness, count: int) -> dict[str, CanaryChain]:
    """A short canary chain per member, sealed on chain."""
    chains = {}
    for a in h.addresses[:count]:
        chains[a] = CanaryChain(keccak(text=f"secret-{a}"), length=8)
        h.task.set_canary_seal(a, chains[a].seal)
    return chains


def _countersign(h: Harness, proposer: str, round_: int, preimage: bytes) -> bytes:
    return td.sign_canary(dev_accounts(h.w3)[0], proposer, round_, preimage, h.task.domain())


def _declare(h: Harness, chains: dict[str, CanaryChain], proposer: str, round_: int) -> Any:
    preimage = chains[proposer].preimage
    assert preimage is not None
    sent = h.task.declare_canary(proposer, round_, preimage, _countersign(h, proposer, round_, preimage))
    chains[proposer].declared()
    return sent


def _four_members(deploy: Any, rate_bps: int) -> tuple[Harness, dict[str, CanaryChain], Any]:
    """Four sealed members, two proposers and two voters in an opened round 1."""
    h: Harness = deploy(max_committee=4, proposer_share_bps=5_000, canary_rate_bps=rate_bps, total_rounds=4)
    h.register(4, stake=2 * ETH)
    chains = _chains(h, 4)
    return h, chains, h.open()


def _canary_round(h: Harness, votes: dict[int, int]) -> tuple[Any, Sent, dict[str, Any], int]:
    """Seal six members, open a round (two proposers, four voters), commit both updates and ``votes``
    (voter seat -> bits), declare proposer 0's update a canary, reveal; (opened, finalization, members
    and pool before the round)."""
    chains = _chains(h, 6)
    o = h.open()
    before = {a: h.task.member(a) for a in o.proposers + o.voters}
    pool = h.task.reward_pool()
    for p in o.proposers:
        h.commit_update(p)
    for j, bits in votes.items():
        h.commit_vote(o.voters[j], bits)
    declared = _declare(h, chains, o.proposers[0], o.round)
    assert declared.named("CanaryDeclared")[0].args["proposer"] == o.proposers[0]
    for j, bits in votes.items():
        h.reveal_vote(o.voters[j], bits)
    return o, h.finalize(o.round), before, pool


def test_a_proven_canary_pays_its_proposer_and_its_acceptor_forfeits_its_stake(deploy: Any) -> None:
    h: Harness = deploy(max_committee=6, proposer_share_bps=3_400, canary_rate_bps=10_000, total_rounds=3)
    h.register(6, stake=2 * ETH)
    # Three voters reject item 0 (the canary) and accept item 1; the fourth accepts both.
    o, sent, before, pool = _canary_round(h, {0: 0b10, 1: 0b10, 2: 0b10, 3: 0b11})
    final = sent.named("RoundFinalized")[0].args
    assert final["decided"] == 0b11 and final["outcomes"] == 0b10  # the canary's verdict stands, not accepted
    slashes = {e.args["account"]: (e.args["amount"], SlashReason(e.args["reason"])) for e in sent.named("Slashed")}
    assert slashes == {o.voters[3]: (2 * ETH, SlashReason.LOSING_VOTE)}  # its whole stake
    assert [e.args["account"] for e in sent.named("Ejected")] == [o.voters[3]]
    assert h.task.member(o.voters[3]).standing >= EJECT_STANDING
    paid = {e.args["account"] for e in sent.named("Rewarded")}
    assert paid == set(o.proposers) | set(o.voters[:3])  # the canary's proposer did its duty: paid
    assert h.task.member(o.proposers[0]).standing == before[o.proposers[0]].standing
    expected = h.reference(o.round, before, pool)
    assert expected.decided == final["decided"] and expected.outcomes == final["outcomes"]
    assert expected.slashes == slashes and expected.ejected == [o.voters[3]]
    assert expected.rewards == {e.args["account"]: e.args["amount"] for e in sent.named("Rewarded")}


def test_a_canary_its_reviewers_did_not_reject_judges_nobody(deploy: Any) -> None:
    """A member that declares a good update a canary cannot get the reviewers who accepted it slashed."""
    h: Harness = deploy(max_committee=6, proposer_share_bps=3_400, canary_rate_bps=10_000, total_rounds=3)
    h.register(6, stake=2 * ETH)
    o, sent, _, _ = _canary_round(h, {0: 0b11, 1: 0b11, 2: 0b11, 3: 0b10})
    final = sent.named("RoundFinalized")[0].args
    assert final["decided"] == 0b10 and final["outcomes"] == 0b10  # accepted by its votes: no verdict, left out
    assert sent.named("Slashed") == [] and sent.named("Ejected") == []
    assert o.proposers[0] in {e.args["account"] for e in sent.named("Rewarded")}


def test_a_declaration_needs_its_window_its_seat_its_seal_the_lottery_and_the_coordinator(deploy: Any) -> None:
    h, chains, o = _four_members(deploy, 10_000)
    p, other = o.proposers
    x = chains[p].preimage
    assert x is not None
    signature = _countersign(h, p, 1, x)
    h.expect_revert("WrongPhase", lambda: h.task.declare_canary(p, 1, x, signature))  # training
    h.commit_update(p)
    h.commit_update(other)
    h.expect_revert("WrongPhase", lambda: h.task.declare_canary(p, 1, x, signature))  # voting
    for v in o.voters:
        h.commit_vote(v, 0b01)
    voter = o.voters[0]
    h.expect_revert("NotProposer", lambda: h.task.declare_canary(voter, 1, x, _countersign(h, voter, 1, x)))
    wrong = keccak(text="not a link")
    h.expect_revert("NotCanary", lambda: h.task.declare_canary(p, 1, wrong, _countersign(h, p, 1, wrong)))
    by_member = td.sign_canary(h.key(other), p, 1, x, h.task.domain())
    h.expect_revert("InvalidSigner", lambda: h.task.declare_canary(p, 1, x, by_member))
    h.expect_revert("InvalidSigner", lambda: h.task.declare_canary(p, 1, x, _countersign(h, p, 2, x)))
    h.reveal_vote(voter, 0b01)
    h.expect_revert("CanaryWindowClosed", lambda: h.task.declare_canary(p, 1, x, signature))


def test_a_seal_counts_from_the_next_round_and_a_preimage_opens_it_once(deploy: Any) -> None:
    h, chains, o = _four_members(deploy, 10_000)
    late, p = o.proposers
    for proposer in o.proposers:
        h.commit_update(proposer)
    chain = CanaryChain(keccak(text="late"), length=4)
    h.task.set_canary_seal(late, chain.seal)  # sealed in round 1, after its global model was known
    assert h.task.canary_seal(late) == (b"\0" * 4 + chain.seal[4:], 1)  # 224 bits kept
    for v in o.voters:
        h.commit_vote(v, 0b01)
    x = chain.preimage
    assert x is not None
    h.expect_revert("NotCanary", lambda: h.task.declare_canary(late, 1, x, _countersign(h, late, 1, x)))
    first = chains[p].preimage
    assert first is not None
    _declare(h, chains, p, 1)
    h.expect_revert("NotCanary", lambda: h.task.declare_canary(p, 1, first, _countersign(h, p, 1, first)))


def test_the_lottery_draws_on_the_global_model_and_the_round(deploy: Any) -> None:
    h, chains, o = _four_members(deploy, 5_000)
    for p in o.proposers:
        h.commit_update(p)
    for v in o.voters:
        h.commit_vote(v, 0b01)
    global_hash = h.task.global_model_hash()
    for p in o.proposers:
        x = chains[p].preimage
        assert x is not None
        if lottery(x, global_hash, 1, 5_000):
            assert h.task.declare_canary(p, 1, x, _countersign(h, p, 1, x)).named("CanaryDeclared")
        else:
            h.expect_revert("NotCanary", lambda p=p, x=x: h.task.declare_canary(p, 1, x, _countersign(h, p, 1, x)))


def test_aggregate_mode_has_no_canaries(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate", max_committee=4, canary_rate_bps=10_000)
    h.register(4, stake=2 * ETH)
    x = keccak(text="x")
    a = h.addresses[0]
    h.expect_revert("WrongVoteMode", lambda: h.task.declare_canary(a, 1, x, _countersign(h, a, 1, x)))


def test_an_abstention_on_a_canary_is_no_acceptance(deploy: Any) -> None:
    h: Harness = deploy(max_committee=6, proposer_share_bps=3_400, canary_rate_bps=10_000, total_rounds=3)
    h.register(6, stake=2 * ETH)
    _, sent, _, _ = _canary_round(h, {0: 0b10, 1: 0b10, 2: 0b10, 3: encode_vote(0b10, 0b01)})
    assert sent.named("Slashed") == [] and sent.named("Ejected") == []


def test_the_audit_replays_seals_declarations_and_their_settlement(deploy: Any) -> None:
    h: Harness = deploy(max_committee=6, proposer_share_bps=3_400, canary_rate_bps=10_000, total_rounds=3)
    h.register(6, stake=2 * ETH)
    _canary_round(h, {0: 0b10, 1: 0b10, 2: 0b10, 3: 0b11})
    events = h.task.events()
    assert replay(events, h.config).disagreements == []
    forged = [
        dataclasses.replace(e, args={**e.args, "preimage": keccak(text="forged")}) if e.name == "CanaryDeclared" else e
        for e in events
    ]
    assert any("does not open its seal" in d for d in replay(forged, h.config).disagreements)
    hidden = [e for e in events if e.name != "CanaryDeclared"]  # a settlement without its declaration
    assert any("slashes" in d for d in replay(hidden, h.config).disagreements)
    cheaper = h.config.model_copy(update={"canary_rate_bps": 0})  # a lottery the rate never draws
    assert any("lottery did not draw" in d for d in replay(events, cheaper).disagreements)
