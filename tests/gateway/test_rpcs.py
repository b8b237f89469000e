"""The gateway end to end: a governed round over gRPC, and the exact status of every bad input."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from eth_account import Account

from fedledger.contracts import typed_data as td
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.checks import message_to_json
from fedledger.server.gateway.proto import gateway_pb2 as pb
from tests.gateway.conftest import ETH, Gateway


def test_a_full_round_through_the_gateway(gw: Gateway) -> None:
    c = gw.client
    gw.register_all()
    assert all(c.account(k.address).registered for k in gw.participants)
    roles = gw.open()
    assert roles.round == 1 and len(roles.proposers) == 3 and len(roles.voters) == 3
    updates = {p: secrets.token_bytes(5_000) for p in roles.proposers}
    with ThreadPoolExecutor(len(updates)) as pool:
        results = list(pool.map(lambda p: c.submit_update(gw.key(p), 1, updates[p], 10), roles.proposers))
    assert {r.status for r in results} == {pb.INCLUDED} and {r.batch_size for r in results} == {3}
    state = c.round(1)
    assert state.phase == "VOTING" and all(p.committed for p in state.proposers)
    for p in state.proposers:
        assert c.fetch_blob(p.update_hash) == updates[p.address]
    gw.vote_all(roles, 0b011)
    assert c.round(1).phase == "REVEALING"
    gw.reveal_all(roles, 0b011)  # the batch that brings the last reveal finalizes the round
    state = c.round(1)
    assert state.phase == "FINALIZED" and state.outcomes == "3" and state.reviewers == 3
    assert [list(v.items) for v in state.voters] == [[0, 1, 2]] * 3 and state.proposers[0].tally == "3"
    assert [e.name for e in c.events(round_=1, names=("RoundFinalized",))] == ["RoundFinalized"]
    published = c.propose_model(gw.coordinator, "publishGlobal", 1, b"aggregate of accepted updates")
    assert [e.name for e in published.events] == ["GlobalPublished"]
    assert c.fetch_blob(keccak256(b"aggregate of accepted updates")) == b"aggregate of accepted updates"
    assert c.task_info().global_model_hash == keccak256(b"aggregate of accepted updates")
    rewarded = [json.loads(e.args_json)["account"] for e in c.events(round_=1, names=("Rewarded",))]
    assert sorted(rewarded) == sorted([roles.proposers[0], roles.proposers[1], *roles.voters])
    assert int(c.account(roles.voters[0]).owed_wei) > 0
    # Members withdraw and exit through relayed signatures.
    voter = gw.key(roles.voters[0])
    owed = int(c.account(voter.address).owed_wei)
    balance = int(c.account(voter.address).balance_wei)
    assert c.member_action(voter, td.WITHDRAW).status == pb.INCLUDED
    assert int(c.account(voter.address).balance_wei) == balance + owed
    assert c.member_action(voter, td.REQUEST_EXIT).status == pb.INCLUDED
    assert c.account(voter.address).exiting
    early = c.member_action(voter, td.COMPLETE_EXIT)
    assert early.status == pb.REJECTED and early.reason.startswith("ExitDelayNotOver")


def test_aggregate_mode_candidate_through_the_gateway(tmp_path: Any) -> None:
    from tests.gateway.conftest import start_gateway

    gw = start_gateway(tmp_path / "g", vote_mode="aggregate")
    try:
        gw.register_all()
        roles = gw.open()
        gw.submit_all(roles)
        assert gw.client.round(1).phase == "TRAINING"
        candidate = b"aggregated candidate"
        gw.client.propose_model(gw.coordinator, "proposeAggregate", 1, candidate, True)  # openNext
        state = gw.client.round(1)
        assert state.phase == "VOTING" and state.candidate == keccak256(candidate)
        gw.vote_all(roles, 1)
        gw.reveal_all(roles, 1)
        assert gw.client.round(1).phase == "FINALIZED"
        assert gw.client.task_info().global_model_hash == keccak256(candidate)
        # The finalizing reveal batch opened round 2, as proposeAggregate asked.
        second = gw.client.round()
        assert second.round == 2 and second.phase == "TRAINING" and len(second.proposers) == 3
    finally:
        gw.server.stop(grace=1)


# ------------------------------------------------------------------------ bad input


def snapshot(gw: Gateway) -> tuple[Any, ...]:
    c = gw.client
    state = c.round()
    state.ClearField("chain_time")  # the clock moves on by itself
    return (
        state.SerializeToString(deterministic=True),
        [c.account(k.address).SerializeToString(deterministic=True) for k in gw.participants],
        len(c.events()),
        sorted(p.name for p in (gw.server.blobs.root).rglob("*") if p.is_file()),
    )


def expect_status(gw: Gateway, code: grpc.StatusCode, call: Callable[[], object], match: str = "") -> str:
    before = snapshot(gw)
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert match in (info.value.details() or "")
    assert snapshot(gw) == before
    assert gw.client.task_info().task_address  # still serving
    return info.value.details() or ""


def header_stream(header: pb.SubmitUpdateHeader, chunks: list[bytes]) -> Iterator[pb.SubmitUpdateMessage]:
    yield pb.SubmitUpdateMessage(header=header)
    for chunk in chunks:
        yield pb.SubmitUpdateMessage(chunk=chunk)


def commitment(gw: Gateway, proposer: Any, data: bytes, **changes: Any) -> tuple[dict[str, Any], pb.SignedAction]:
    message = td.commit_update_message(proposer.address, 1, keccak256(data), 10)
    message.update(changes)
    return message, gw.client.sign(proposer, td.COMMIT_UPDATE, message)


@pytest.fixture
def opened(gw: Gateway) -> pb.RoundRoles:
    gw.register_all()
    return gw.open()


def test_signature_problems(gw: Gateway, opened: pb.RoundRoles) -> None:
    proposer = gw.key(opened.proposers[0])
    data = b"update bytes"
    _, signed = commitment(gw, proposer, data)
    short = pb.SignedAction(action=signed.action, message_json=signed.message_json, signature=signed.signature[:64])
    stub = gw.client.stub
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=short, size=len(data)), [data])),
        "65 bytes",
    )
    odd_v = pb.SignedAction(
        action=signed.action, message_json=signed.message_json, signature=signed.signature[:64] + b"\x01"
    )
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=odd_v, size=len(data)), [data])),
        "v must be 27 or 28",
    )
    garbage = pb.SignedAction(action=signed.action, message_json=signed.message_json, signature=b"\xff" * 64 + b"\x1b")
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=garbage, size=len(data)), [data])),
        "malformed signature",
    )
    message, _ = commitment(gw, proposer, data)
    other = Account.create()
    forged_sig = td.SignedAction(td.COMMIT_UPDATE, message, b"")
    encoded = td.typed_data(td.COMMIT_UPDATE, message, gw.client.task().domain)
    from eth_account.messages import encode_typed_data

    forged_sig = other.sign_message(encode_typed_data(full_message=encoded)).signature
    forged = pb.SignedAction(action="CommitUpdate", message_json=message_to_json(message), signature=bytes(forged_sig))
    expect_status(
        gw,
        grpc.StatusCode.UNAUTHENTICATED,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=forged, size=len(data)), [data])),
        other.address,
    )
    bad_json = pb.SignedAction(action="CommitUpdate", message_json="{not json", signature=signed.signature)
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=bad_json, size=1), [b"x"])),
    )
    expect_status(gw, grpc.StatusCode.INVALID_ARGUMENT, lambda: stub.CommitVote(signed), "not accepted here")


def test_member_action_deadlines_and_nonces(gw: Gateway, opened: pb.RoundRoles) -> None:
    member = gw.key(opened.voters[0])
    c, stub = gw.client, gw.client.stub

    def signed(nonce: int, deadline: int) -> pb.SignedAction:
        return c.sign(member, td.REQUEST_EXIT, td.member_message(member.address, nonce, deadline))

    expect_status(gw, grpc.StatusCode.FAILED_PRECONDITION, lambda: stub.RelayMemberAction(signed(0, 1)), "expired")
    expect_status(
        gw, grpc.StatusCode.FAILED_PRECONDITION, lambda: stub.RelayMemberAction(signed(7, c._deadline())), "ahead"
    )
    first_deadline = c._deadline()
    first = signed(0, first_deadline)
    included = stub.RelayMemberAction(first)
    assert included.status == pb.INCLUDED
    # The very same signed action again (a client retrying): the recorded outcome, no second transaction.
    again = stub.RelayMemberAction(first)
    assert (again.status, again.transaction_hash) == (pb.INCLUDED, included.transaction_hash)
    assert len(c.events(participant=member.address, names=("ExitRequested",))) == 1
    # Another signature over the used nonce is a replay: refused.
    expect_status(
        gw,
        grpc.StatusCode.ALREADY_EXISTS,
        lambda: stub.RelayMemberAction(signed(0, first_deadline + 1)),
        "already used",
    )


def test_a_replayed_round_action_is_refused(gw: Gateway, opened: pb.RoundRoles) -> None:
    proposer = gw.key(opened.proposers[0])
    data = b"update"
    _, signed = commitment(gw, proposer, data)
    stub = gw.client.stub
    assert stub.SubmitUpdate(
        header_stream(pb.SubmitUpdateHeader(commitment=signed, size=len(data)), [data])
    ).status in (
        pb.INCLUDED,
        pb.QUEUED,
    )
    gw.client.flush(gw.coordinator)
    # The same signed commitment again (a retry, or someone replaying it): the recorded outcome, nothing new.
    before = snapshot(gw)
    again = stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=signed, size=len(data)), [data]))
    assert again.status == pb.INCLUDED and again.transaction_hash
    assert snapshot(gw) == before
    # Another commitment of the same proposer and round is refused.
    other = b"another update"
    _, second = commitment(gw, proposer, other)
    expect_status(
        gw,
        grpc.StatusCode.ALREADY_EXISTS,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=second, size=len(other)), [other])),
        "already committed",
    )


def test_round_phase_role_and_duplicates(gw: Gateway, opened: pb.RoundRoles) -> None:
    c, stub = gw.client, gw.client.stub
    proposer, voter = gw.key(opened.proposers[0]), gw.key(opened.voters[0])
    data = b"update"
    _, wrong_round = commitment(gw, proposer, data, round=2)
    expect_status(
        gw,
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=wrong_round, size=len(data)), [data])),
        "not the current round",
    )
    expect_status(
        gw, grpc.StatusCode.FAILED_PRECONDITION, lambda: c.commit_vote(voter, 1, 1, b"\1" * 32), "phase TRAINING"
    )
    expect_status(gw, grpc.StatusCode.PERMISSION_DENIED, lambda: c.submit_update(voter, 1, data, 10), "not a proposer")
    stranger = Account.create()
    expect_status(gw, grpc.StatusCode.PERMISSION_DENIED, lambda: c.submit_update(stranger, 1, data, 10), "not a member")
    assert c.submit_update(proposer, 1, data, 10).status == pb.INCLUDED
    expect_status(
        gw, grpc.StatusCode.ALREADY_EXISTS, lambda: c.submit_update(proposer, 1, b"another", 10), "already committed"
    )


def test_blob_problems(gw: Gateway, opened: pb.RoundRoles) -> None:
    stub = gw.client.stub
    proposer = gw.key(opened.proposers[0])
    data = b"the real update"
    _, signed = commitment(gw, proposer, data)
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(
            header_stream(pb.SubmitUpdateHeader(commitment=signed, size=len(data)), [b"x" * len(data)])
        ),
        "hash",
    )
    expect_status(
        gw,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=signed, size=2**40), [data])),
        "exceeds",
    )
    expect_status(
        gw,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=signed, size=3), [data])),
    )
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(header_stream(pb.SubmitUpdateHeader(commitment=signed, size=len(data)), [data[:5]])),
        "received 5",
    )
    expect_status(
        gw,
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: stub.SubmitUpdate(iter([pb.SubmitUpdateMessage(chunk=data)])),
        "must start with",
    )
    expect_status(
        gw,
        grpc.StatusCode.NOT_FOUND,
        lambda: list(stub.FetchBlob(pb.FetchBlobRequest(hash=keccak256(b"never stored")))),
    )
    expect_status(
        gw, grpc.StatusCode.INVALID_ARGUMENT, lambda: list(stub.FetchBlob(pb.FetchBlobRequest(hash=b"short")))
    )
    # The honest submission still works afterwards.
    assert gw.client.submit_update(proposer, 1, data, 10).status == pb.INCLUDED


def raw_tx(gw: Gateway, key: Any, function: str, *, value: int = 0, to: str | None = None) -> bytes:
    """Sign a task call locally, without asking the gateway (which would refuse to estimate it)."""
    data = bytes.fromhex(gw.client._abi.encode_abi(function, args=[])[2:])
    tx = {
        "type": 2, "chainId": gw.ledger.chain_id, "nonce": gw.client.account(key.address).chain_nonce,
        "to": to or gw.ledger.task.address, "value": value, "data": data, "gas": 500_000,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
    }  # fmt: skip
    return bytes(key.sign_transaction(tx).raw_transaction)


def test_raw_transactions_are_checked(gw: Gateway) -> None:
    c = gw.client
    key = gw.participants[0]
    elsewhere = raw_tx(gw, key, "register", value=2 * ETH, to="0x" + "12" * 20)
    expect_status(gw, grpc.StatusCode.PERMISSION_DENIED, lambda: c.send_transaction(elsewhere), "only relays")
    not_allowed = raw_tx(gw, gw.coordinator, "openRound")
    expect_status(gw, grpc.StatusCode.PERMISSION_DENIED, lambda: c.send_transaction(not_allowed), "not relayed here")
    expect_status(gw, grpc.StatusCode.INVALID_ARGUMENT, lambda: c.send_transaction(b"\x02garbage"), "not a signed")
    short = raw_tx(gw, key, "register", value=ETH // 2)
    expect_status(gw, grpc.StatusCode.FAILED_PRECONDITION, lambda: c.send_transaction(short), "InsufficientStake")
    assert c.register(key, 2 * ETH).events[0].name == "Registered"
    impostor = raw_tx(gw, key, "openRound")
    expect_status(
        gw,
        grpc.StatusCode.PERMISSION_DENIED,
        lambda: c.stub.OpenRound(pb.SendTransactionRequest(raw_transaction=impostor)),
        "coordinator",
    )


def test_coordinator_commands_need_the_coordinator(gw: Gateway, opened: pb.RoundRoles) -> None:
    c = gw.client
    impostor = gw.participants[0]
    expect_status(gw, grpc.StatusCode.UNAUTHENTICATED, lambda: c.finalize_round(impostor, 1), "not the coordinator")
    expect_status(gw, grpc.StatusCode.FAILED_PRECONDITION, lambda: c.advance_phase(gw.coordinator, 1), "PhaseNotOver")
    wrong = c.command(gw.coordinator, "finalizeRound", 1)
    expect_status(gw, grpc.StatusCode.INVALID_ARGUMENT, lambda: c.stub.AdvancePhase(wrong), "advancePhase")


def test_bad_clients_do_not_disturb_good_ones(gw: Gateway, opened: pb.RoundRoles) -> None:
    c = gw.client
    voter = gw.key(opened.voters[0])

    def bad(i: int) -> grpc.StatusCode:
        try:
            c.submit_update(voter, 1, secrets.token_bytes(100), 1)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(12) as pool:
        bad_calls = [pool.submit(bad, i) for i in range(20)]
        good = [pool.submit(c.submit_update, gw.key(p), 1, secrets.token_bytes(100), 5) for p in opened.proposers]
        assert {f.result().status for f in good} == {pb.INCLUDED}
        codes = [f.result() for f in bad_calls]
    # Not a proposer: refused; once the good commitments advanced the round, refused as out of phase.
    assert set(codes) <= {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION}
    assert grpc.StatusCode.PERMISSION_DENIED in codes
