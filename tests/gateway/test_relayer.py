"""The relayer's queueing, flush triggers, retries and per-caller outcomes (with a fake chain)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from fedledger.contracts import typed_data as td
from fedledger.contracts.bindings import Event, Sent
from fedledger.server.gateway.relayer import DuplicateAction, Relayer, RelayFailed

WRONG_PHASE = function_signature_to_4byte_selector("WrongPhase(uint8,uint8)")


def action(signer: str, name: str = "CommitVote") -> td.SignedAction:
    kind = td.ACTION_TYPES[name]
    message = {n: 0 for n in kind.field_names} | {kind.signer_field: signer}
    return td.SignedAction(kind, message, b"\0" * 65)


def signer(i: int) -> str:
    return to_checksum_address(f"0xabc{i:037x}")


class FakeChain:
    def __init__(self, fail_times: int = 0, reject: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_times = fail_times
        self.reject = reject or set()
        self.lock = threading.Lock()

    def send(self, actions: Sequence[td.SignedAction]) -> Sent:
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise ConnectionError("node hiccup")
            self.batches.append([a.signer for a in actions])
            reason = function_signature_to_4byte_selector("WrongPhase(uint8,uint8)") + encode(
                ["uint8", "uint8"], [2, 3]
            )
            events = [
                Event(
                    "ActionRejected", {"signer": a.signer, "reason": reason, "round": 1, "action": 1}, 5, "0x", i, "0x"
                )
                for i, a in enumerate(actions)
                if a.signer in self.reject
            ]
            receipt = {"transactionHash": b"\x11" * 32, "blockNumber": 5, "gasUsed": 1, "logs": []}
            return Sent(receipt, events)  # type: ignore[arg-type]


def test_flushes_when_every_expected_actor_queued() -> None:
    chain = FakeChain()
    relayer = Relayer(chain.send, window=30)
    start = time.monotonic()
    first = relayer.enqueue(action(signer(1)), remaining=2)  # two actors still had to act
    time.sleep(0.1)
    assert not first.done()
    second = relayer.enqueue(action(signer(2)), remaining=2)
    assert first.result(timeout=5).included and second.result(timeout=5).included
    assert time.monotonic() - start < 5
    assert chain.batches == [[signer(1), signer(2)]] and relayer.stats.batch_sizes == [2]
    assert first.result().batch_size == 2
    relayer.stop()


def test_flushes_after_the_window() -> None:
    chain = FakeChain()
    relayer = Relayer(chain.send, window=0.2)
    start = time.monotonic()
    outcome = relayer.enqueue(action(signer(1)), remaining=2).result(timeout=5)
    assert outcome.included and 0.15 < time.monotonic() - start < 3
    relayer.stop()


def test_max_batch_splits() -> None:
    chain = FakeChain()
    relayer = Relayer(chain.send, window=30, max_batch=2)
    futures = [relayer.enqueue(action(signer(i))) for i in range(1, 4)]
    relayer.flush()
    assert all(f.result(timeout=5).included for f in futures)
    assert sorted(map(len, chain.batches)) == [1, 2]
    relayer.stop()


def test_each_caller_learns_its_own_rejection() -> None:
    chain = FakeChain(reject={signer(2)})
    relayer = Relayer(chain.send, window=30)
    a, b = relayer.enqueue(action(signer(1))), relayer.enqueue(action(signer(2)))
    assert relayer.flush() == 2  # both relayed in this call's batch (a rejected entry is relayed too)
    assert relayer.flush() == 0
    assert a.result(timeout=5).included and a.result().reason == ""
    rejected = b.result(timeout=5)
    assert not rejected.included and rejected.reason == "WrongPhase(expected=2, actual=3)"
    relayer.stop()


def test_failed_flush_is_retried() -> None:
    chain = FakeChain(fail_times=2)
    relayer = Relayer(chain.send, window=30, retries=3, backoff=0.01)
    future = relayer.enqueue(action(signer(1)))
    relayer.flush()
    assert future.result(timeout=5).included and len(chain.batches) == 1
    relayer.stop()


def test_flush_that_keeps_failing_tells_every_caller() -> None:
    chain = FakeChain(fail_times=100)
    relayer = Relayer(chain.send, window=30, retries=2, backoff=0.01)
    futures = [relayer.enqueue(action(signer(i))) for i in (1, 2)]
    assert relayer.flush() == 0  # nothing reached the chain
    for f in futures:
        with pytest.raises(RelayFailed, match="after 3 attempts"):
            f.result(timeout=5)
    assert relayer.stats.failures == 1 and relayer.pending() == 0
    relayer.stop()


def test_duplicates_are_refused_and_counts_are_per_signer() -> None:
    relayer = Relayer(FakeChain().send, window=30)
    relayer.enqueue(action(signer(1)))
    relayer.enqueue(action(signer(1), "RequestExit"))
    with pytest.raises(DuplicateAction):
        relayer.enqueue(action(signer(1)))
    assert relayer.pending(signer(1)) == 2 and relayer.pending(signer(2)) == 0
    assert relayer.is_queued("CommitVote", signer(1)) and not relayer.is_queued("RevealVote", signer(1))
    relayer.stop()
    assert relayer.pending() == 0


def test_stop_relays_what_is_queued() -> None:
    chain = FakeChain()
    relayer = Relayer(chain.send, window=30)
    future = relayer.enqueue(action(signer(1)))
    relayer.stop(flush=True)
    assert future.result(timeout=1).included
    with pytest.raises(RuntimeError, match="stopping"):
        relayer.enqueue(action(signer(2)))
