"""EIP-712 relayed actions: the shared type definitions, signature checks and batch semantics."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from fedledger.contracts import typed_data as td
from fedledger.contracts.errors import decode_revert
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


def _open_with_proposers(h: Harness) -> list[str]:
    h.register(6)
    return h.open().proposers


def _rejections(sent: object) -> list[tuple[str, str]]:
    events = sent.named("ActionRejected")  # type: ignore[attr-defined]
    return [(e.args["signer"], decode_revert(e.args["reason"]).error) for e in events]


def test_good_signature_is_applied_and_consumes_the_nonce(h: Harness) -> None:
    proposers = _open_with_proposers(h)
    p = proposers[0]
    msg = td.commit_update_message(p, 1, model_hash("u"), 10, 0, h.deadline())
    signed = h.sign(td.COMMIT_UPDATE, msg)
    assert td.verify(signed, h.task.domain())
    sent = h.task.relay(h.relayer, [signed])
    assert _rejections(sent) == []
    assert sent.named("UpdateCommitted")[0].args["proposer"] == p
    assert h.task.nonce(p) == 1 and h.task.update(1, 0).committed


def test_each_bad_signature_is_rejected_with_its_error(h: Harness) -> None:
    proposers = _open_with_proposers(h)
    p, q = proposers[0], proposers[1]
    domain = h.task.domain()
    good = td.commit_update_message(p, 1, model_hash("u"), 10, 0, h.deadline())
    wrong_signer = _forge(h.key(q), td.COMMIT_UPDATE, good, domain)  # q signs a message naming p
    assert not td.verify(wrong_signer, domain)
    expired = h.sign(td.COMMIT_UPDATE, {**good, "deadline": h.deadline(-1)})
    other_chain = td.sign_action(h.key(p), td.COMMIT_UPDATE, good, replace(domain, chain_id=domain.chain_id + 1))
    other_contract = td.sign_action(h.key(p), td.COMMIT_UPDATE, good, replace(domain, verifying_contract=h.relayer))
    future_nonce = h.sign(td.COMMIT_UPDATE, {**good, "nonce": 5})
    for bad, error in [
        (wrong_signer, "InvalidSigner"),
        (expired, "ExpiredSignature"),
        (other_chain, "InvalidSigner"),
        (other_contract, "InvalidSigner"),
        (future_nonce, "InvalidAccountNonce"),
    ]:
        before = h.snapshot()
        sent = h.task.relay(h.relayer, [bad])
        assert _rejections(sent) == [(p, error)]
        event = sent.named("ActionRejected")[0].args
        assert event["round"] == 1 and event["action"] == Action.COMMIT_UPDATE
        assert h.snapshot() == before and h.task.nonce(p) == 0


def test_replayed_signature_is_rejected(h: Harness) -> None:
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


def test_batch_with_one_bad_entry_applies_the_rest(h: Harness) -> None:
    h.register(10)
    opened = h.open()
    entries = [
        h.sign(td.COMMIT_UPDATE, td.commit_update_message(p, 1, model_hash(p), 10 + i, 0, h.deadline()))
        for i, p in enumerate(opened.proposers)
    ]
    bad_index = 2
    entries[bad_index] = h.sign(
        td.COMMIT_UPDATE, {**entries[bad_index].message, "numExamples": 0}
    )  # well signed, but invalid
    sent = h.task.relay(h.relayer, entries)
    assert _rejections(sent) == [(opened.proposers[bad_index], "InvalidExampleCount")]
    committed = [h.task.update(1, i).committed for i in range(len(opened.proposers))]
    assert committed == [i != bad_index for i in range(len(opened.proposers))]
    assert h.task.nonce(opened.proposers[bad_index]) == 0
    assert h.task.nonce(opened.proposers[0]) == 1


def test_full_round_by_signatures_only(deploy: object) -> None:
    h: Harness = deploy(vote_mode="aggregate")  # type: ignore[operator]
    h.register(6)
    opened = h.open()
    h.task.relay(
        h.relayer,
        [
            h.sign(td.COMMIT_UPDATE, td.commit_update_message(p, 1, model_hash(p), 5, 0, h.deadline()))
            for p in opened.proposers
        ],
    )
    h.task.propose_aggregate(h.coordinator, 1, model_hash("candidate"))
    salts = {v: bytes([i + 1]) * 32 for i, v in enumerate(opened.voters)}
    commits = [
        h.sign(
            td.COMMIT_VOTE,
            td.commit_vote_message(
                v,
                1,
                vote_commitment(h.task.address, 1, model_hash("candidate"), 1, salts[v], v),
                0,
                h.deadline(),
            ),
        )
        for v in opened.voters
    ]
    assert _rejections(h.task.relay(h.relayer, commits)) == []
    assert h.phase() is Phase.REVEALING
    reveals = [
        h.sign(td.REVEAL_VOTE, td.reveal_vote_message(v, 1, 1, salts[v], 1, h.deadline())) for v in opened.voters
    ]
    assert _rejections(h.task.relay(h.relayer, reveals)) == []
    h.task.finalize_round(h.relayer, 1)
    assert h.task.global_model_hash() == model_hash("candidate")
    # Withdrawals by signature pay the signer, not the relayer.
    voter = opened.voters[0]
    owed = h.task.member(voter).owed
    assert owed > 0
    before = h.w3.eth.get_balance(voter)
    sent = h.task.relay(h.relayer, [h.sign(td.WITHDRAW, td.member_message(voter, 2, h.deadline()))])
    assert _rejections(sent) == []
    assert h.w3.eth.get_balance(voter) == before + owed
    # Exit by signature: request, wait, complete; the stake is then credited.
    h.task.relay(h.relayer, [h.sign(td.REQUEST_EXIT, td.member_message(voter, 3, h.deadline(10**6)))])
    early = h.task.relay(h.relayer, [h.sign(td.COMPLETE_EXIT, td.member_message(voter, 4, h.deadline(10**6)))])
    assert _rejections(early) == [(voter, "ExitDelayNotOver")]
    h.advance(3_600)
    stake = h.task.member(voter).stake
    done = h.task.relay(h.relayer, [h.sign(td.COMPLETE_EXIT, td.member_message(voter, 4, h.deadline(10**6)))])
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
