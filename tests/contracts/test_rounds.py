"""Round life cycle: opening, phases, deadlines and every revert path of the round actions."""

from __future__ import annotations

from typing import Any

from fedledger.contracts.types import Phase, Role
from tests.conftest import ETH, Harness, model_hash


def test_open_round_rules(deploy: Any) -> None:
    h: Harness = deploy(total_rounds=1)
    outsider = h.addresses[0]
    h.expect_revert("NotCoordinator", lambda: h.task.open_round(outsider), caller=outsider)
    h.register(1)
    h.expect_revert("NotEnoughParticipants", lambda: h.task.open_round(h.coordinator), eligible=1)
    h.task.register(h.addresses[1], ETH)
    opened = h.open()
    assert opened.round == 1 and len(opened.proposers) == 1 and len(opened.voters) == 1
    info = h.task.round_info(1)
    assert info.phase is Phase.TRAINING and info.num_proposers == 1 and info.num_voters == 1
    assert info.deadline == opened.deadline == h.w3.eth.get_block("latest")["timestamp"] + 600
    assert info.reviewers == 1 and opened.reviewers == 1
    assert h.task.committee() == (opened.proposers, opened.voters)
    assert sorted(opened.committee) == [0, 1] and opened.eligible == [0b11]
    assert h.task.role_of(1, opened.proposers[0]) == (Role.PROPOSER, 0)
    assert h.task.role_of(1, opened.voters[0]) == (Role.VOTER, 0)
    assert h.task.role_of(1, h.coordinator) == (Role.NONE, 0)
    h.expect_revert("RoundNotClosed", lambda: h.task.open_round(h.coordinator), round=1)
    # Finish round 1 (nothing committed), then the task is complete.
    h.advance(601)
    h.task.advance_phase(h.coordinator, 1)
    h.task.finalize_round(h.coordinator, 1)
    h.expect_revert("TaskCompleted", lambda: h.task.open_round(h.coordinator), totalRounds=1)


def test_commit_update_reverts(h: Harness) -> None:
    h.register(4)
    early = h.addresses[0]
    h.expect_revert("WrongRound", lambda: h.task.commit_update(early, 1, model_hash("u"), 1), given=1, current=0)
    opened = h.open()
    p, v = opened.proposers[0], opened.voters[0]
    h.expect_revert("WrongRound", lambda: h.task.commit_update(p, 2, model_hash("u"), 1), given=2, current=1)
    h.expect_revert("WrongRound", lambda: h.task.commit_update(p, 0, model_hash("u"), 1), given=0, current=1)
    h.expect_revert("NotProposer", lambda: h.task.commit_update(v, 1, model_hash("u"), 1), round=1, account=v)
    h.expect_revert("ZeroHash", lambda: h.task.commit_update(p, 1, b"\0" * 32, 1))
    h.expect_revert("InvalidExampleCount", lambda: h.task.commit_update(p, 1, model_hash("u"), 0), numExamples=0)
    h.expect_revert(
        "InvalidExampleCount", lambda: h.task.commit_update(p, 1, model_hash("u"), 2**64), numExamples=2**64
    )
    sent = h.task.commit_update(p, 1, model_hash("u"), 42)
    assert sent.named("UpdateCommitted")[0].args == {
        "round": 1,
        "proposer": p,
        "updateHash": model_hash("u"),
        "numExamples": 42,
    }
    info = h.task.round_info()
    assert info.committed_mask == 0b1 and info.num_updates == 1
    h.expect_revert("AlreadyActed", lambda: h.task.commit_update(p, 1, model_hash("v"), 1), round=1, account=p)


def test_last_commitment_opens_voting_in_per_update_mode(h: Harness) -> None:
    h.register(4)
    opened = h.open()
    h.commit_update(opened.proposers[0])
    assert h.phase() is Phase.TRAINING
    sent = h.commit_update(opened.proposers[1])
    assert sent.named("PhaseAdvanced")[0].args["phase"] == Phase.VOTING
    info = h.task.round_info(1)
    assert info.phase is Phase.VOTING and info.committed_mask == 0b11 and info.num_updates == 2
    late = opened.proposers[0]
    h.expect_revert("WrongPhase", lambda: h.task.commit_update(late, 1, model_hash("x"), 1), expected=1, actual=2)


def test_vote_reverts(h: Harness) -> None:
    h.register(4)
    opened = h.open()
    p, v = opened.proposers[0], opened.voters[0]
    h.expect_revert("WrongPhase", lambda: h.task.commit_vote(v, 1, model_hash("c")), expected=2, actual=1)
    for proposer in opened.proposers:
        h.commit_update(proposer)
    h.expect_revert("NotVoter", lambda: h.task.commit_vote(p, 1, model_hash("c")), round=1, account=p)
    h.expect_revert("ZeroHash", lambda: h.task.commit_vote(v, 1, b"\0" * 32))
    h.expect_revert("WrongPhase", lambda: h.task.reveal_vote(v, 1, 1, b"\1" * 32), expected=3, actual=2)
    h.commit_vote(v, 0b11)
    h.expect_revert("AlreadyActed", lambda: h.task.commit_vote(v, 1, model_hash("c")), round=1, account=v)
    h.expect_revert("PhaseNotOver", lambda: h.task.advance_phase(h.coordinator, 1))
    h.advance(301)
    h.task.advance_phase(h.coordinator, 1)
    assert h.phase() is Phase.REVEALING
    silent = opened.voters[1]
    salt = h.salts[(1, v)]
    h.expect_revert("NoVoteCommitted", lambda: h.task.reveal_vote(silent, 1, 1, salt), round=1, account=silent)
    h.expect_revert("NotVoter", lambda: h.task.reveal_vote(p, 1, 1, salt), round=1, account=p)
    h.expect_revert("InvalidVoteBits", lambda: h.task.reveal_vote(v, 1, 0b111, salt), bits=0b111, numItems=2)
    h.expect_revert("CommitmentMismatch", lambda: h.task.reveal_vote(v, 1, 0b01, salt))
    h.expect_revert("CommitmentMismatch", lambda: h.task.reveal_vote(v, 1, 0b11, b"\7" * 32))
    wrong = [(0, model_hash("not the commitment"))]
    h.expect_revert("VoteDigestMismatch", lambda: h.task.reveal_vote(v, 1, 0b11, salt, committed=wrong))
    sent = h.reveal_vote(v, 0b11)
    assert sent.named("VoteRevealed")[0].args == {"round": 1, "voter": v, "bits": 0b11, "salt": salt}
    # The only committed vote is revealed: the reveal finalized the round.
    assert sent.named("RoundFinalized") and h.phase() is Phase.FINALIZED
    h.expect_revert("WrongPhase", lambda: h.reveal_vote(v, 0b11), expected=3, actual=4)


def test_advance_and_finalize_deadlines(h: Harness) -> None:
    h.register(4)
    h.expect_revert("WrongRound", lambda: h.task.advance_phase(h.coordinator, 1), given=1, current=0)
    opened = h.open()
    deadline = h.task.round_info(1).deadline
    h.expect_revert("PhaseNotOver", lambda: h.task.advance_phase(h.coordinator, 1), deadline=deadline)
    h.expect_revert("WrongPhase", lambda: h.task.finalize_round(h.coordinator, 1), expected=3, actual=1)
    h.commit_update(opened.proposers[0])
    h.advance(601)
    h.task.advance_phase(h.addresses[9], 1)  # anyone may advance after the deadline
    assert h.phase() is Phase.VOTING
    h.commit_vote(opened.voters[0], 1)
    h.commit_vote(opened.voters[1], 1)  # everyone voted: reveal opens at once
    assert h.phase() is Phase.REVEALING
    h.expect_revert("WrongPhase", lambda: h.task.advance_phase(h.coordinator, 1), expected=2, actual=3)
    h.reveal_vote(opened.voters[0], 1)
    info = h.task.round_info(1)
    assert info.revealed_mask == 0b1 and info.num_reveals == 1
    h.expect_revert("PhaseNotOver", lambda: h.task.finalize_round(h.coordinator, 1), deadline=info.deadline)
    sent = h.reveal_vote(opened.voters[1], 1)  # the last reveal finalizes
    assert sent.named("RoundFinalized") and h.phase() is Phase.FINALIZED
    h.expect_revert("WrongPhase", lambda: h.task.finalize_round(h.coordinator, 1), expected=3, actual=4)


def test_reveal_deadline_finalizes_with_stored_reveals(h: Harness) -> None:
    h.register(6)
    opened = h.open()
    for proposer in opened.proposers:
        h.commit_update(proposer)
    for voter in opened.voters:
        h.commit_vote(voter, 0b111)
    h.reveal_vote(opened.voters[0], 0b111)  # this reveal's bits are kept in storage: the round goes on
    h.reveal_vote(opened.voters[1], 0b111)
    h.expect_revert("PhaseNotOver", lambda: h.task.finalize_round(h.coordinator, 1))
    h.advance(301)
    sent = h.task.finalize_round(h.addresses[9], 1)
    final = sent.named("RoundFinalized")[0].args
    assert final["tallies"] == [2, 2, 2] and final["outcomes"] == 0b111
    slashed = {e.args["account"]: e.args["reason"] for e in sent.named("Slashed")}
    assert slashed == {opened.voters[2]: 3}  # committed, never revealed


def test_publish_global_rules(h: Harness) -> None:
    h.register(4)
    opened = h.open()
    h.expect_revert("WrongPhase", lambda: h.task.publish_global(h.coordinator, 1, model_hash("g")))
    for proposer in opened.proposers:
        h.commit_update(proposer)
    for voter in opened.voters:
        h.commit_vote(voter, 0b11)
    reveals = [h.reveal_vote(voter, 0b11) for voter in opened.voters]
    assert reveals[-1].named("RoundFinalized")[0].args["outcomes"] == 0b11
    info = h.task.round_info(1)
    assert info.phase is Phase.FINALIZED and not info.global_published
    h.expect_revert("RoundNotClosed", lambda: h.task.open_round(h.coordinator), round=1)
    outsider = h.addresses[0]
    h.expect_revert("NotCoordinator", lambda: h.task.publish_global(outsider, 1, model_hash("g")))
    h.expect_revert("ZeroHash", lambda: h.task.publish_global(h.coordinator, 1, b"\0" * 32))
    sent = h.task.publish_global(h.coordinator, 1, model_hash("g"))
    assert sent.named("GlobalPublished")[0].args == {"round": 1, "modelHash": model_hash("g")}
    assert h.task.global_model_hash() == model_hash("g") and h.task.round_info(1).global_published
    h.expect_revert("GlobalAlreadyPublished", lambda: h.task.publish_global(h.coordinator, 1, model_hash("h")))
    h.open()  # the next round may open now
    # Earlier rounds are in the events only.
    h.expect_revert("WrongRound", lambda: h.task.round_info(1), given=1, current=2)


def _accept_all(h: Harness, opened: Any) -> None:
    for proposer in opened.proposers:
        h.commit_update(proposer)
    for voter in opened.voters:
        h.commit_vote(voter, 0b11)
    for voter in opened.voters:
        h.reveal_vote(voter, 0b11)


def test_publish_and_open_in_one_transaction(h: Harness) -> None:
    h.register(4)
    opened = h.open()
    h.expect_revert("WrongPhase", lambda: h.task.publish_and_open(h.coordinator, 1, model_hash("g")))
    _accept_all(h, opened)
    outsider = h.addresses[0]
    h.expect_revert("NotCoordinator", lambda: h.task.publish_and_open(outsider, 1, model_hash("g")))
    second, sent = h.task.publish_and_open(h.coordinator, 1, model_hash("g"))
    assert [e.name for e in sent.events] == ["GlobalPublished", "RoundOpened"]
    assert second.round == 2 and h.task.global_model_hash() == model_hash("g")
    info = h.task.round_info()
    # The vote slot still holds round 1's masks, tagged with round 1: round 2 reads it as empty.
    assert (info.vote_committed_mask, info.revealed_mask, info.committed_mask, info.vote_digest) == (
        0,
        0,
        0,
        b"\0" * 32,
    )


def test_aggregate_mode_actions(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate")
    h.register(4)
    opened = h.open()
    c = h.coordinator
    h.expect_revert("NoUpdates", lambda: h.task.propose_aggregate(c, 1, model_hash("agg")), round=1)
    h.commit_update(opened.proposers[0])
    h.commit_update(opened.proposers[1])
    assert h.phase() is Phase.TRAINING  # aggregate mode waits for the candidate
    outsider = opened.proposers[0]
    h.expect_revert("NotCoordinator", lambda: h.task.propose_aggregate(outsider, 1, model_hash("agg")))
    h.expect_revert("ZeroHash", lambda: h.task.propose_aggregate(c, 1, b"\0" * 32))
    h.expect_revert("WrongVoteMode", lambda: h.task.publish_global(c, 1, model_hash("g")), mode=1)
    sent = h.task.propose_aggregate(c, 1, model_hash("agg"))
    assert sent.named("AggregateProposed")[0].args == {"round": 1, "candidateHash": model_hash("agg")}
    assert h.phase() is Phase.VOTING and h.task.round_info(1).candidate == model_hash("agg")
    h.expect_revert("WrongPhase", lambda: h.task.propose_aggregate(c, 1, model_hash("b")), expected=1, actual=2)


def test_aggregate_open_next_opens_the_next_round_with_the_last_reveal(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate", total_rounds=2)
    h.register(4)
    opened = h.open()
    for proposer in opened.proposers:
        h.commit_update(proposer)
    h.task.propose_aggregate(h.coordinator, 1, model_hash("agg"), open_next=True)
    for voter in opened.voters:
        h.commit_vote(voter, 1)
    h.reveal_vote(opened.voters[0], 1)
    sent = h.reveal_vote(opened.voters[1], 1)
    names = [e.name for e in sent.events]
    assert names.index("RoundFinalized") < names.index("GlobalPublished") < names.index("RoundOpened")
    assert h.task.current_round() == 2 and h.phase() is Phase.TRAINING
    assert h.task.global_model_hash() == model_hash("agg")
    # The last round cannot open a next one: openNext is ignored there.
    second = h.task.opened(sent.named("RoundOpened")[0])
    for proposer in second.proposers:
        h.commit_update(proposer)
    h.task.propose_aggregate(h.coordinator, 2, model_hash("agg2"), open_next=True)
    for voter in second.voters:
        h.commit_vote(voter, 1)
    last = [h.reveal_vote(voter, 1) for voter in second.voters][-1]
    assert last.named("RoundFinalized") and not last.named("RoundOpened")
    assert h.task.current_round() == 2 and h.phase() is Phase.FINALIZED


def test_reviewers_per_update_limit_each_vote_to_its_items(deploy: Any) -> None:
    from fedledger.contracts.sortition import items_of, reviewers_of

    h: Harness = deploy(reviewers_per_update=2, max_committee=12)
    h.register(12)
    opened = h.open()
    p, v = len(opened.proposers), len(opened.voters)
    assert (p, v, opened.reviewers) == (6, 6, 2)
    for j in range(v):
        assert h.task.items_of(j) == items_of(j, p, v, 2) and len(items_of(j, p, v, 2)) == 2
    for i in range(p):
        assert len(reviewers_of(i, p, v, 2)) == 2
    for proposer in opened.proposers:
        h.commit_update(proposer)
    for voter in opened.voters:
        h.commit_vote(voter, 0b01)  # accept its first item, reject its second
    voter = opened.voters[0]
    salt = h.salts[(1, voter)]
    h.expect_revert("InvalidVoteBits", lambda: h.task.reveal_vote(voter, 1, 0b101, salt), bits=0b101, numItems=2)
    sent = [h.reveal_vote(voter, 0b01) for voter in opened.voters][-1]
    # Item (j + a V) / k: update i is voter (2 i)'s or (2 i + 1)'s first or second item.
    tallies = sent.named("RoundFinalized")[0].args["tallies"]
    expected = [0] * p
    for j in range(v):
        for a, item in enumerate(items_of(j, p, v, 2)):
            expected[item] += 1 if a == 0 else -1
    assert tallies == expected


def test_per_update_mode_refuses_candidates(h: Harness) -> None:
    h.register(4)
    h.open()
    h.expect_revert("WrongVoteMode", lambda: h.task.propose_aggregate(h.coordinator, 1, model_hash("a")), mode=0)


def test_aggregate_without_candidate_skips_voting(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate")
    h.register(4)
    opened = h.open()
    h.commit_update(opened.proposers[0])
    h.advance(601)
    h.task.advance_phase(h.coordinator, 1)
    assert h.phase() is Phase.REVEALING
    sent = h.task.finalize_round(h.coordinator, 1)
    # The committed proposer is not blamed for the missing candidate; the absent one is.
    slashed = {e.args["account"] for e in sent.named("Slashed")}
    assert slashed == {opened.proposers[1]}
    assert sent.named("Rewarded") == []
    assert h.task.global_model_hash() == h.config.initial_model_hash
