"""Pull payments resist a receiver that re-enters withdraw()."""

from __future__ import annotations

import pytest
from eth_utils import function_signature_to_4byte_selector

from fedledger.contracts import typed_data as td
from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.bindings import deploy_contract, send
from fedledger.contracts.errors import ContractRevert
from tests.conftest import ETH, Harness


class Receiver:
    """The ReentrantReceiver test contract acting as a member."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.address, _ = deploy_contract(h.w3, "ReentrantReceiver", h.coordinator, h.task.address)
        self.contract = h.w3.eth.contract(address=self.address, abi=load_artifact("ReentrantReceiver").abi)

    def send(self, fn: object) -> object:
        return send(self.h.w3, fn, self.h.coordinator)  # type: ignore[arg-type]

    def act(self, name: str, *args: object) -> object:
        data = self.h.task.contract.encode_abi(name, args=list(args))
        return self.send(self.contract.functions.act(data))


def setup_receiver_with_reward(h: Harness) -> tuple[Receiver, int]:
    receiver = Receiver(h)
    send(h.w3, receiver.contract.functions.register(), h.coordinator, value=2 * ETH)
    # Exiting credits the stake to the receiver: the simplest way to be owed money.
    receiver.act("requestExit")
    h.advance(3_600)
    receiver.act("completeExit")
    owed = h.task.member(receiver.address).owed
    assert owed == 2 * ETH
    return receiver, owed


def test_reentrant_withdraw_fails_and_changes_nothing(h: Harness) -> None:
    receiver, owed = setup_receiver_with_reward(h)
    receiver.send(receiver.contract.functions.setMode(1))  # Bubble: re-enter and let it revert
    balance = h.task.balance()
    with pytest.raises(ContractRevert) as info:
        receiver.act("withdraw")
    assert info.value.error == "TransferFailed"
    assert info.value.params == {"to": receiver.address, "amount": owed}
    assert h.task.member(receiver.address).owed == owed and h.task.balance() == balance
    assert h.w3.eth.get_balance(receiver.address) == 0


def test_swallowed_reentry_pays_exactly_once(h: Harness) -> None:
    receiver, owed = setup_receiver_with_reward(h)
    receiver.send(receiver.contract.functions.setMode(2))  # Swallow: re-enter, catch the error
    balance = h.task.balance()
    receiver.act("withdraw")
    assert h.w3.eth.get_balance(receiver.address) == owed
    assert h.task.balance() == balance - owed
    assert h.task.member(receiver.address).owed == 0
    assert receiver.contract.functions.reentryAttempts().call() == 1
    error = receiver.contract.functions.lastReentryError().call()
    assert error == function_signature_to_4byte_selector("ReentrancyGuardReentrantCall()")


def test_relayed_withdraw_with_nothing_owed_is_rejected_not_reverted(h: Harness) -> None:
    h.register(1)
    member = h.addresses[0]
    signed = h.sign(td.WITHDRAW, td.member_message(member, 0, h.deadline()))
    sent = h.task.relay(h.relayer, [signed])
    assert [e.args["signer"] for e in sent.named("ActionRejected")] == [member]
    assert h.task.nonce(member) == 0
