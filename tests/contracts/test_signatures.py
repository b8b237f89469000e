"""EIP-712 relayed actions: the shared type definitions, signature checks and batch semantics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.contracts import typed_data as td
from fedledger.contracts.errors import ContractRevert, decode_revert
from fedledger.contracts.types import Action, Phase, vote_commitment
from tests.conftest import ETH, Harness, model_hash


@pytest.mark.parametrize(
    ("action", "constant"),
    [
        (td.COMMIT_UPDATE, "COMMIT_UPDATE_TYPEHASH"),
        (td.COMMIT_VOTE, "COMMIT_VOTE_TYPEHASH"),
        (td.REVEAL_VOTE, "REVEAL_VOTE_TYPEHASH"),
        (td.REQUEST_EXIT, "REQUEST_EXIT_TYPEHASH"),
        (td.COMPLETE_EXIT, "COMPLETE_EXIT_TYPEHASH"),
        (td.WITHDRAW, "WITHDRAW_TYPEHASH"),
    ],
)
def test_python_type_hashes_equal_the_contract_constants(h: Harness, action: td.ActionType, constant: str) -> None:
    assert h.task.contract.functions[constant]().call() == action.type_hash


def test_domain_matches_eip5267(h: Harness) -> None:
    _fields, name, version, chain_id, contract, _salt, _ext = h.task.contract.functions.eip712Domain().call()
    domain = h.task.domain()
    assert (name, version, chain_id, contract) == (
        td.DOMAIN_NAME,
        td.DOMAIN_VERSION,
        domain.chain_id,
        domain.verifying_contract,
    )


def test_vote_commitment_python_equals_contract(h: Harness) -> None:
    voter, salt = h.addresses[0], b"\x05" * 32
    expected = vote_commitment(h.task.address, 3, b"\0" * 32, 0b101, salt, voter)
    assert h.task.vote_commitment(3, 0b101, salt, voter) == expected


def _forge(account: LocalAccount, action: td.ActionType, message: dict, domain: td.Domain) -> td.SignedAction:
    """Sign a message that names another account (sign_action refuses to)."""
    signature = account.sign_message(encode_typed_data(full_message=td.typed_data(action, message, domain))).signature
    return td.SignedAction(action, message, bytes(signature))


def _malleate(signed: td.SignedAction) -> td.SignedAction:
    """The same signature with s -> n - s (and v flipped): valid for ecrecover, refused as malleable."""
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    r, s, v = signed.signature[:32], int.from_bytes(signed.signature[32:64], "big"), signed.signature[64]
    return td.SignedAction(signed.action, signed.message, r + (n - s).to_bytes(32, "big") + bytes([55 - v]))


def _open_with_proposers(h: Harness) -> list[str]:
    h.register(6)
    return h.open().proposers


def _rejections(sent: object) -> list[tuple[str, str]]:
    events = sent.named("ActionRejected")  # type: ignore[attr-defined]
    return [(e.args["signer"], decode_revert(e.args["reason"]).error) for e in events]


def test_good_signature_is_applied_without_a_nonce(h: Harness) -> None:
    proposers = _open_with_proposers(h)
    p = proposers[0]
    signed = h.sign(td.COMMIT_UPDATE, td.commit_update_message(p, 1, model_hash("u"), 10))
    assert td.verify(signed, h.task.domain())
    sent = h.task.relay(h.relayer, [signed])
    assert _rejections(sent) == []
    assert sent.named("UpdateCommitted")[0].args["proposer"] == p
    assert h.task.nonce(p) == 0 and h.task.round_info().committed_mask == 0b1


def test_each_bad_signature_or_request_is_rejected_with_its_error(h: Harness) -> None:
    proposers = _open_with_proposers(h)
    p, q = proposers[0], proposers[1]
    domain = h.task.domain()
    good = td.commit_update_message(p, 1, model_hash("u"), 10)
    wrong_signer = _forge(h.key(q), td.COMMIT_UPDATE, good, domain)  # q signs a message naming p
    assert not td.verify(wrong_signer, domain)
    other_chain = td.sign_action(h.key(p), td.COMMIT_UPDATE, good, replace(domain, chain_id=domain.chain_id + 1))
    other_contract = td.sign_action(h.key(p), td.COMMIT_UPDATE, good, replace(domain, verifying_contract=h.relayer))
    other_round = h.sign(td.COMMIT_UPDATE, {**good, "round": 2})
    malleable = _malleate(h.sign(td.COMMIT_UPDATE, good))
    for bad, error, seat in [
        (wrong_signer, "InvalidSigner", 0),
        (other_chain, "InvalidSigner", 0),
        (other_contract, "InvalidSigner", 0),
        (malleable, "InvalidSigner", 0),
        (other_round, "WrongRound", 0),
        (h.sign(td.COMMIT_UPDATE, good), "NotProposer", 1),  # a seat hint naming another proposer's seat
        (h.sign(td.COMMIT_UPDATE, good), "NotProposer", 99),  # a seat beyond the committee
    ]:
        before = h.snapshot()
        requests = [bad.as_request(seat)]
        sent = h.task._send(h.relayer, td.COMMIT_UPDATE.batch_function, requests)
        assert _rejections(sent) == [(p, error)], error
        event = sent.named("ActionRejected")[0].args
        assert event["round"] == 2 if error == "WrongRound" else event["round"] == 1
        assert event["action"] == Action.COMMIT_UPDATE
        assert h.snapshot() == before and h.task.nonce(p) == 0


def test_replayed_round_action_is_rejected_by_the_acted_bit(h: Harness) -> None:
    proposers = _open_with_proposers(h)
    signed = h.sign(td.COMMIT_UPDATE, td.commit_update_message(proposers[0], 1, model_hash("u"), 10))
    assert _rejections(h.task.relay(h.relayer, [signed])) == []
    assert _rejections(h.task.relay(h.relayer, [signed])) == [(proposers[0], "AlreadyActed")]
    # In one batch too: the second copy meets the bit the first one set.
    other = h.sign(td.COMMIT_UPDATE, td.commit_update_message(proposers[1], 1, model_hash("v"), 10))
    assert _rejections(h.task.relay(h.relayer, [other, other])) == [(proposers[1], "AlreadyActed")]


def test_replayed_member_action_is_rejected_by_its_nonce(h: Harness) -> None:
    h.register(4)
    member = h.addresses[0]
    signed = h.sign(td.REQUEST_EXIT, td.member_message(member, 0, h.deadline()))
    assert _rejections(h.task.relay(h.relayer, [signed])) == []
    assert h.task.member(member).exiting
    sent = h.task.relay(h.relayer, [signed])
    assert _rejections(sent) == [(member, "InvalidAccountNonce")]
    assert decode_revert(sent.named("ActionRejected")[0].args["reason"]).params == {
        "account": member,
        "currentNonce": 1,
    }
    expired = h.sign(td.WITHDRAW, td.member_message(member, 1, h.deadline(-1)))
    assert _rejections(h.task.relay(h.relayer, [expired])) == [(member, "ExpiredSignature")]


def test_batch_with_one_bad_entry_applies_the_rest(h: Harness) -> None:
    h.register(10)
    opened = h.open()
    entries = [
        h.sign(td.COMMIT_UPDATE, td.commit_update_message(p, 1, model_hash(p), 10 + i))
        for i, p in enumerate(opened.proposers)
    ]
    bad_index = 2
    entries[bad_index] = h.sign(
        td.COMMIT_UPDATE, {**entries[bad_index].message, "numExamples": 0}
    )  # well signed, but invalid
    sent = h.task.relay(h.relayer, entries)
    assert _rejections(sent) == [(opened.proposers[bad_index], "InvalidExampleCount")]
    mask = h.task.round_info().committed_mask
    assert [bool(mask >> i & 1) for i in range(len(opened.proposers))] == [
        i != bad_index for i in range(len(opened.proposers))
    ]


def test_full_round_by_signatures_only(deploy: object) -> None:
    h: Harness = deploy(vote_mode="aggregate")  # type: ignore[operator]
    h.register(6)
    opened = h.open()
    h.task.relay(
        h.relayer,
        [h.sign(td.COMMIT_UPDATE, td.commit_update_message(p, 1, model_hash(p), 5)) for p in opened.proposers],
    )
    h.task.propose_aggregate(h.coordinator, 1, model_hash("candidate"))
    salts = {v: bytes([i + 1]) * 32 for i, v in enumerate(opened.voters)}
    commits = [
        h.sign(
            td.COMMIT_VOTE,
            td.commit_vote_message(v, 1, vote_commitment(h.task.address, 1, model_hash("candidate"), 1, salts[v], v)),
        )
        for v in opened.voters
    ]
    assert _rejections(h.task.relay(h.relayer, commits)) == []
    assert h.phase() is Phase.REVEALING
    reveals = [h.sign(td.REVEAL_VOTE, td.reveal_vote_message(v, 1, 1, salts[v])) for v in opened.voters]
    with pytest.raises(ContractRevert, match="VoteDigestMismatch"):  # a relayer's wrong list reverts its batch
        h.task.relay(h.relayer, reveals, committed=[(0, model_hash("x"))])
    sent = h.task.relay(h.relayer, reveals)
    assert _rejections(sent) == [] and sent.named("RoundFinalized")  # the last reveal finalizes
    assert h.task.global_model_hash() == model_hash("candidate")
    # Withdrawals by signature pay the signer, not the relayer.
    voter = opened.voters[0]
    owed = h.task.member(voter).owed
    assert owed > 0
    before = h.w3.eth.get_balance(voter)
    sent = h.task.relay(h.relayer, [h.sign(td.WITHDRAW, td.member_message(voter, 0, h.deadline()))])
    assert _rejections(sent) == []
    assert h.w3.eth.get_balance(voter) == before + owed
    # Exit by signature: request, wait, complete; the stake is then credited.
    h.task.relay(h.relayer, [h.sign(td.REQUEST_EXIT, td.member_message(voter, 1, h.deadline(10**6)))])
    early = h.task.relay(h.relayer, [h.sign(td.COMPLETE_EXIT, td.member_message(voter, 2, h.deadline(10**6)))])
    assert _rejections(early) == [(voter, "ExitDelayNotOver")]
    h.advance(3_600)
    stake = h.task.member(voter).stake
    done = h.task.relay(h.relayer, [h.sign(td.COMPLETE_EXIT, td.member_message(voter, 2, h.deadline(10**6)))])
    assert _rejections(done) == [] and h.task.member(voter).owed == stake == 2 * ETH + 0


def test_relay_refuses_mixed_or_empty_batches(h: Harness) -> None:
    member = h.addresses[0]
    a = h.sign(td.REQUEST_EXIT, td.member_message(member, 0, h.deadline()))
    b = h.sign(td.WITHDRAW, td.member_message(member, 0, h.deadline()))
    with pytest.raises(ValueError, match="one action type"):
        h.task.relay(h.relayer, [a, b])
    with pytest.raises(ValueError, match="nothing"):
        h.task.relay(h.relayer, [])


def test_sign_action_refuses_a_message_naming_someone_else(h: Harness) -> None:
    msg = td.member_message(h.addresses[1], 0, h.deadline())
    with pytest.raises(ValueError, match="not the signing account"):
        td.sign_action(h.key(h.addresses[0]), td.REQUEST_EXIT, msg, h.task.domain())


def test_a_vote_salt_is_the_voters_own_and_the_same_every_time(h: Harness) -> None:
    """Deterministic (a seeded run is the same to the gas; a restarted voter can still reveal), yet
    made only with the voter's key: other voters, rounds or tasks give unrelated salts."""
    first, second = h.participants[:2]
    domain = h.task.domain()
    salt = td.vote_salt(first, 3, domain)
    assert len(salt) == 32 and salt == td.vote_salt(first, 3, domain)
    other_task = replace(domain, verifying_contract=h.relayer)
    others = {td.vote_salt(first, 4, domain), td.vote_salt(second, 3, domain), td.vote_salt(first, 3, other_task)}
    assert len(others | {salt}) == 4


DEFECTS = ["ok", "forged", "other_round", "wrong_seat", "zero_hash", "no_examples", "malleable", "stranger"]


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(DEFECTS)), min_size=1, max_size=10))
def test_batch_fast_path_applies_exactly_what_the_rules_allow(deploy: Any, entries: list[tuple[int, str]]) -> None:
    h: Harness = deploy(max_committee=8)
    h.register(10)
    opened = h.open()
    proposers = opened.proposers
    stranger = next(a for a in h.addresses[:10] if a not in proposers + opened.voters)
    domain = h.task.domain()
    requests, expected, committed = [], [], set()
    for k, (i, defect) in enumerate(entries):
        p = proposers[i]
        message = td.commit_update_message(p, 1, model_hash(f"{p}-{k}"), 10)
        seat = i
        signed = h.sign(td.COMMIT_UPDATE, message)
        error = None
        if defect == "forged":
            signed, error = _forge(h.key(proposers[(i + 1) % 4]), td.COMMIT_UPDATE, message, domain), "InvalidSigner"
        elif defect == "malleable":
            signed, error = _malleate(signed), "InvalidSigner"
        elif defect == "other_round":
            signed, error = h.sign(td.COMMIT_UPDATE, {**message, "round": 2}), "WrongRound"
        elif defect == "wrong_seat":
            seat, error = (i + 1) % 4, "NotProposer"
        elif defect == "stranger":
            p = stranger
            signed = h.sign(td.COMMIT_UPDATE, {**message, "proposer": stranger})
            error = "NotProposer"
        elif p in committed:
            error = "AlreadyActed"
        elif defect == "zero_hash":
            signed, error = h.sign(td.COMMIT_UPDATE, {**message, "updateHash": b"\0" * 32}), "ZeroHash"
        elif defect == "no_examples":
            signed, error = h.sign(td.COMMIT_UPDATE, {**message, "numExamples": 0}), "InvalidExampleCount"
        if error is None:
            committed.add(p)
        requests.append(signed.as_request(seat))
        expected.append((p, error))
    sent = h.task._send(h.relayer, td.COMMIT_UPDATE.batch_function, requests)
    applied = [e.args["proposer"] for e in sent.named("UpdateCommitted")]
    assert applied == [p for p, error in expected if error is None]
    assert _rejections(sent) == [(p, error) for p, error in expected if error is not None]
    mask = h.task.round_info().committed_mask
    assert {proposers[i] for i in range(4) if mask >> i & 1} == committed
