"""One full per-update round, relayed by signatures, on eth-tester and on a real anvil node."""

from __future__ import annotations

import pytest
from web3 import Web3

from fedledger.contracts import sortition
from fedledger.contracts import typed_data as td
from fedledger.contracts.errors import ContractRevert
from fedledger.contracts.settlement import ProposerSeat, RoundInput, VoterSeat, settle
from fedledger.contracts.types import Phase, SlashReason, VoteMode, vote_commitment
from fedledger.deploy.chain import connect, embedded_web3
from tests.conftest import ETH, Harness, make_harness, model_hash


def play_full_round(h: Harness) -> None:
    members = h.register(8, stake=[ETH, 2 * ETH, 3 * ETH, 4 * ETH, ETH, 2 * ETH, 3 * ETH, 4 * ETH])
    stakes = {a: h.task.member(a).stake for a in members}
    opened = h.open()
    drawn, _ = sortition.draw_committee(list(range(8)), opened.seed, 10, 5_000)
    assert opened.committee == drawn and opened.proposers + opened.voters == [members[i] for i in drawn]
    proposers, voters = opened.proposers, opened.voters
    # Three proposers commit (the last one stays silent); one entry is badly signed.
    commits = [
        h.sign(td.COMMIT_UPDATE, td.commit_update_message(p, 1, model_hash(p), 100 + i))
        for i, p in enumerate(proposers[:3])
    ]
    forged = td.SignedAction(commits[0].action, {**commits[0].message, "numExamples": 1}, commits[0].signature)
    sent = h.task.relay(h.relayer, [*commits, forged])
    assert [e.args["signer"] for e in sent.named("ActionRejected")] == [proposers[0]]
    h.advance(h.config.training_duration + 1)
    h.task.advance_phase(h.relayer, 1)
    assert h.phase() is Phase.VOTING
    # Voters: accept p0 and p1, reject p2; the last voter contradicts everyone; one never reveals.
    bits = {voters[0]: 0b011, voters[1]: 0b011, voters[2]: 0b100, voters[3]: 0b011}
    salts = {v: bytes([j + 7]) * 32 for j, v in enumerate(voters)}
    h.task.relay(
        h.relayer,
        [
            h.sign(
                td.COMMIT_VOTE,
                td.commit_vote_message(v, 1, vote_commitment(h.task.address, 1, b"\0" * 32, bits[v], salts[v], v)),
            )
            for v in voters
        ],
    )
    assert h.phase() is Phase.REVEALING
    reveals = [h.sign(td.REVEAL_VOTE, td.reveal_vote_message(v, 1, bits[v], salts[v])) for v in voters[:3]]
    sent = h.task.relay(h.relayer, reveals)
    assert sent.named("ActionRejected") == [] and not sent.named("RoundFinalized")  # one vote is still hidden
    with pytest.raises(ContractRevert) as info:
        h.task.finalize_round(h.relayer, 1)
    assert info.value.error == "PhaseNotOver"
    h.advance(h.config.reveal_duration + 1)
    pool = h.task.reward_pool()
    sent = h.task.finalize_round(h.relayer, 1)

    expected = settle(
        RoundInput(
            vote_mode=VoteMode.PER_UPDATE,
            stake_weighted=False,
            slash_rate_bps=1_000,
            total_rounds=5,
            round=1,
            reward_pool=pool,
            voter_reward_bps=h.config.voter_reward_bps,
            proposers=[ProposerSeat(p, stakes[p], i < 3) for i, p in enumerate(proposers)],
            voters=[VoterSeat(v, stakes[v], True, j < 3, bits[v]) for j, v in enumerate(voters)],
        )
    )
    final = sent.named("RoundFinalized")[0].args
    assert final["outcomes"] == expected.outcomes == 0b011
    assert final["tallies"] == expected.tallies == [1, 1, -1, 0]
    rewards = {e.args["account"]: e.args["amount"] for e in sent.named("Rewarded")}
    slashes = {e.args["account"]: (e.args["amount"], SlashReason(e.args["reason"])) for e in sent.named("Slashed")}
    assert rewards == expected.rewards and set(rewards) == {proposers[0], proposers[1], voters[0], voters[1]}
    assert slashes == expected.slashes
    assert slashes[voters[3]][1] is SlashReason.UNREVEALED_VOTE
    assert slashes[proposers[3]][1] is SlashReason.MISSING_UPDATE
    for account, amount in rewards.items():
        assert h.task.member(account).owed == amount
    h.task.publish_global(h.coordinator, 1, model_hash("global-1"))
    assert h.task.global_model_hash() == model_hash("global-1")
    assert h.task.balance() == h.stake_sum() + h.task.reward_pool() + h.owed_sum()


def test_full_round_on_eth_tester() -> None:
    play_full_round(make_harness(embedded_web3(num_accounts=24)))


@pytest.mark.anvil
def test_full_round_on_anvil(anvil_url: str) -> None:
    w3: Web3 = connect(anvil_url)
    h = make_harness(w3)
    play_full_round(h)
    # On a real node the seed mixes in the block's prevrandao (mixHash).
    opened = h.task.events(names=["RoundOpened"])[0]
    block = w3.eth.get_block(opened.block_number)
    assert opened.args["seed"] == sortition.round_seed(
        int.from_bytes(block["mixHash"], "big"), 1, h.config.initial_model_hash, h.task.address
    )
    # Reverts surface as the same ContractRevert on a real node.
    with pytest.raises(ContractRevert) as info:
        h.task.register(h.addresses[0], ETH)
    assert info.value.error == "AlreadyRegistered" and info.value.params == {"account": h.addresses[0]}
    with pytest.raises(ContractRevert) as info:
        h.task.open_round(h.addresses[0])
    assert info.value.error == "NotCoordinator"
