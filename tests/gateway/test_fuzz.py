"""Fuzzing every gateway RPC with arbitrary and mutated messages (hypothesis).

Each answer must be OK or a precise gRPC status with a reason (never UNKNOWN or INTERNAL), the
gateway keeps serving, no blob is left half-written, and a rejected request changes nothing:
chain state, events, accounts and stored blobs are compared before and after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fedledger.contracts import typed_data as td
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.checks import message_to_json
from fedledger.server.gateway.proto import gateway_pb2 as pb
from tests.gateway.conftest import Gateway, start_gateway
from tests.gateway.test_rpcs import snapshot

PRECISE = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DATA_LOSS,
}
FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # Shrinking through real RPCs can take many minutes: report the failing example as found.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with registered members and an open round, shared by the module (nothing may change it)."""
    gw = start_gateway(tmp_path_factory.mktemp("fuzz") / "gateway")
    try:
        gw.register_all()
        gw.open()
        yield gw
    finally:
        gw.client.close()
        gw.server.stop(grace=1)


CLIENT_CUT = "Exception iterating requests"
"""What gRPC's client reports when its own request stream fails (the client 'dies' mid-upload)."""


def answered(gw: Gateway, call: Callable[[], Any], mutating: bool = True) -> None:
    """Run ``call``; a refusal must be precise and leave everything as it was."""
    before = snapshot(gw) if mutating else None
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    except grpc.RpcError as exc:
        cut = CLIENT_CUT in (exc.details() or "")  # the client's own failure, the gateway sees a cancel
        assert cut or exc.code() in PRECISE, f"{exc.code()}: {exc.details()}"
        assert exc.details(), "a refusal says why"
        if before is not None:
            assert snapshot(gw) == before, "a rejected request changed the state"
    blobs = gw.server.blobs.root
    assert not [p for p in blobs.rglob(".incoming-*")], "a half-written blob was left behind"
    for path in blobs.rglob("*"):
        if path.is_file():
            assert keccak256(path.read_bytes()).hex() == path.name, f"{path} does not hold its hash's bytes"
    assert gw.client.task_info().task_address  # still serving


def _addresses() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=50),
        st.binary(min_size=0, max_size=24).map(lambda b: "0x" + b.hex()),
        st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    )


def _json_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(2**300), max_value=2**300), st.text(max_size=80),
        st.binary(max_size=40).map(lambda b: "0x" + b.hex()), st.lists(st.integers(), max_size=3),
    )  # fmt: skip


@st.composite
def signed_actions(draw: st.DrawFn, gw: Gateway, kind: td.ActionType) -> pb.SignedAction:
    """A genuine signed action of ``kind`` with some of its parts mutated (or replaced by noise)."""
    key = gw.participants[draw(st.integers(0, len(gw.participants) - 1))]
    fields = {name: draw(_json_values()) for name in kind.field_names}
    genuine: dict[str, Any] = {
        td.COMMIT_UPDATE.name: lambda: td.commit_update_message(key.address, 1, b"\x07" * 32, 10),
        td.COMMIT_VOTE.name: lambda: td.commit_vote_message(key.address, 1, b"\x08" * 32),
    }.get(kind.name, lambda: fields)()
    message = dict(genuine)
    for name in draw(st.lists(st.sampled_from(kind.field_names), max_size=3, unique=True)):
        message[name] = fields[name]
    try:
        signature = gw.client.sign(key, kind, genuine).signature
    except Exception:
        signature = b"\x00" * 65
    signature = draw(st.one_of(st.just(signature), st.binary(max_size=80)))
    try:
        message_json = message_to_json(message)
    except Exception:
        message_json = json.dumps({k: str(v) for k, v in message.items()})
    action = draw(st.one_of(st.just(kind.name), st.sampled_from(list(td.ACTION_TYPES)), st.text(max_size=20)))
    text = draw(st.one_of(st.just(message_json), st.text(max_size=200)))
    return pb.SignedAction(action=action, message_json=text, signature=signature, no_wait=True)


def test_fuzz_signed_action_rpcs(fuzzed: Gateway) -> None:
    stub = fuzzed.client.stub
    rpcs = {td.COMMIT_VOTE: stub.CommitVote, td.REVEAL_VOTE: stub.RevealVote, td.REQUEST_EXIT: stub.RelayMemberAction}

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(list(rpcs)))
        request = data.draw(signed_actions(fuzzed, kind))
        answered(fuzzed, lambda: rpcs[kind](request, timeout=30))

    run()


def test_fuzz_update_streams(fuzzed: Gateway) -> None:
    stub = fuzzed.client.stub

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        header = pb.SubmitUpdateHeader(
            commitment=data.draw(signed_actions(fuzzed, td.COMMIT_UPDATE)), size=data.draw(st.integers(0, 2**64 - 1))
        )
        chunks = data.draw(st.lists(st.binary(max_size=2000), max_size=4))
        parts = [pb.SubmitUpdateMessage(header=header), *(pb.SubmitUpdateMessage(chunk=c) for c in chunks)]
        order = data.draw(st.sampled_from(["header first", "no header", "two headers", "chunk first", "cut off"]))
        if order == "no header":
            parts = parts[1:]
        elif order == "two headers":
            parts = [parts[0], *parts]
        elif order == "chunk first":
            parts = [pb.SubmitUpdateMessage(chunk=b"x"), *parts]

        def stream() -> Iterator[pb.SubmitUpdateMessage]:
            yield from parts
            if order == "cut off":  # the client dies mid-upload
                raise RuntimeError("connection lost")

        answered(fuzzed, lambda: stub.SubmitUpdate(stream(), timeout=30))

    run()


def test_fuzz_raw_transactions_and_commands(fuzzed: Gateway) -> None:
    stub, coordinator = fuzzed.client.stub, fuzzed.coordinator
    genuine = fuzzed.client.signed_transaction(fuzzed.participants[0], "addStake", value=10**18)

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        raw = data.draw(
            st.one_of(
                st.binary(max_size=300),
                st.tuples(st.integers(0, len(genuine) - 1), st.integers(1, 255)).map(
                    lambda m: genuine[: m[0]] + bytes([genuine[m[0]] ^ m[1]]) + genuine[m[0] + 1 :]
                ),
            )
        )
        command = pb.CoordinatorCommand(
            command=data.draw(st.sampled_from(["advancePhase", "finalizeRound", "flush", "storeBlob", ""])),
            round=data.draw(st.integers(0, 2**64 - 1)),
            subject=data.draw(st.binary(max_size=40)),
            deadline=data.draw(st.integers(0, 2**64 - 1)),
            signature=data.draw(st.one_of(st.binary(max_size=80), st.just(b"\x1b" * 65))),
        )
        which = data.draw(st.sampled_from(["send", "open", "model", "advance", "finalize", "flush", "prepare"]))
        model_stream = [
            pb.ProposeModelMessage(header=pb.ProposeModelHeader(raw_transaction=raw, size=3)),
            pb.ProposeModelMessage(chunk=b"abc"),
        ]
        calls = {
            "send": lambda: stub.SendTransaction(pb.SendTransactionRequest(raw_transaction=raw), timeout=30),
            "open": lambda: stub.OpenRound(pb.SendTransactionRequest(raw_transaction=raw), timeout=30),
            "model": lambda: stub.ProposeModel(iter(model_stream), timeout=30),
            "advance": lambda: stub.AdvancePhase(command, timeout=30),
            "finalize": lambda: stub.FinalizeRound(command, timeout=30),
            "flush": lambda: stub.FlushQueue(command, timeout=30),
            "prepare": lambda: stub.PrepareTransaction(
                pb.PrepareTransactionRequest(
                    **{"from": data.draw(_addresses())}, data=raw, value_wei=data.draw(st.text(max_size=30))
                ),
                timeout=30,
            ),
        }
        if which == "send" and raw == genuine:
            return  # the one well-formed transaction here would (rightly) change the state
        answered(fuzzed, calls[which], mutating=which != "prepare")

    del coordinator
    run()


def test_fuzz_queries(fuzzed: Gateway) -> None:
    stub = fuzzed.client.stub

    @FUZZ
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        which = data.draw(st.sampled_from(["round", "events", "account", "balances", "blob"]))
        calls = {
            "round": lambda: stub.GetRound(
                pb.GetRoundRequest(round=data.draw(st.integers(0, 2**64 - 1)), brief=data.draw(st.booleans())),
                timeout=30,
            ),
            "events": lambda: stub.GetEvents(
                pb.GetEventsRequest(
                    round=data.draw(st.integers(0, 2**64 - 1)),
                    participant=data.draw(st.one_of(st.just(""), _addresses())),
                    names=data.draw(st.lists(st.text(max_size=20), max_size=3)),
                ),
                timeout=30,
            ),
            "account": lambda: stub.GetAccount(pb.GetAccountRequest(address=data.draw(_addresses())), timeout=30),
            "balances": lambda: stub.GetBalances(
                pb.GetBalancesRequest(addresses=data.draw(st.lists(_addresses(), max_size=5))), timeout=30
            ),
            "blob": lambda: stub.FetchBlob(pb.FetchBlobRequest(hash=data.draw(st.binary(max_size=40))), timeout=30),
        }
        answered(fuzzed, calls[which], mutating=False)

    run()


def test_a_cut_off_upload_can_be_sent_again_whole(fuzzed: Gateway, tmp_path: Path) -> None:
    """A node that disconnects during its upload loses nothing: the next whole upload is accepted."""
    state = fuzzed.client.round()
    proposer = fuzzed.key(state.proposers[0].address)
    data = b"an update" * 1000
    signed = fuzzed.client.sign(
        proposer, td.COMMIT_UPDATE, td.commit_update_message(proposer.address, 1, keccak256(data), 10)
    )

    def cut_off() -> Iterator[pb.SubmitUpdateMessage]:
        yield pb.SubmitUpdateMessage(header=pb.SubmitUpdateHeader(commitment=signed, size=len(data)))
        yield pb.SubmitUpdateMessage(chunk=data[:100])
        raise RuntimeError("connection lost")

    answered(fuzzed, lambda: fuzzed.client.stub.SubmitUpdate(cut_off(), timeout=30))
    assert not fuzzed.server.blobs.path(keccak256(data)).exists()
    whole = fuzzed.client.submit_update(proposer, 1, data, 10)
    assert whole.status == pb.INCLUDED and fuzzed.client.fetch_blob(keccak256(data)) == data


def test_an_unfunded_sender_is_a_precondition_not_an_internal_error(fuzzed: Gateway) -> None:
    """Found by the fuzzing above: eth-tester's "cannot afford" surfaced as INTERNAL."""
    from eth_account import Account

    pauper = Account.create()
    with pytest.raises(grpc.RpcError) as refused:
        fuzzed.client.signed_transaction(pauper, "addStake", value=10**18)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot pay" in (refused.value.details() or "")
