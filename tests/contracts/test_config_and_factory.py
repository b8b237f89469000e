"""Task parameters, the factory registry and the code store."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.bindings import send
from fedledger.contracts.errors import ContractRevert
from fedledger.contracts.types import TaskConfig, VoteMode
from tests.conftest import DEFAULTS, ETH, Harness


def test_config_round_trips_through_the_contract(deploy: Any) -> None:
    h: Harness = deploy(vote_mode="aggregate", stake_weighted=True, strategy="krum", total_rounds=7)
    assert h.task.config() == h.config
    assert h.task.config().vote_mode is VoteMode.AGGREGATE
    assert h.task.global_model_hash() == h.config.initial_model_hash
    assert h.task.reward_pool() == 100 * ETH == h.task.balance()
    assert h.task.current_round() == 0
    assert h.task.contract.functions.coordinator().call() == h.coordinator
    assert h.task.round_info().round == 0 and h.task.committee() == ([], [])


def test_factory_lists_tasks_and_uses_the_stored_code(h: Harness, chain: Any) -> None:
    assert h.factory.tasks() == [h.task.address]
    assert h.factory.is_task(h.task.address)
    assert not h.factory.is_task(h.coordinator)
    creation = h.factory.contract.functions.creationCode().call()
    assert "0x" + creation.hex() == load_artifact("FLTask").linked_bytecode(h.libraries)
    parts = h.factory.code_parts()
    assert len(parts) >= 2  # FLTask's creation code is larger than one contract's code may be
    joined = b""
    for part in parts:
        code = h.w3.eth.get_code(part)
        assert code[0] == 0 and len(code) <= 24_576
        joined += bytes(code[1:])
    assert joined == creation
    second, sent = h.factory.create_task(h.coordinator, h.config.model_copy(update={"total_rounds": 2}), pool=ETH)
    created = sent.named("TaskCreated")[0].args
    assert created["task"] == second.address and created["index"] == 1 and created["pool"] == ETH
    assert h.factory.tasks() == [h.task.address, second.address]
    assert h.factory.contract.functions.taskCount().call() == 2
    assert h.factory.contract.functions.taskAt(1).call() == second.address
    assert second.config().total_rounds == 2


@pytest.mark.parametrize("parts", [[], ["coordinator"]])
def test_factory_rejects_missing_or_codeless_parts(h: Harness, parts: list[str]) -> None:
    artifact = load_artifact("FLTaskFactory")
    factory = h.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    with pytest.raises(ContractRevert) as info:
        send(h.w3, factory.constructor([h.coordinator for _ in parts]), h.coordinator)
    assert info.value.error == "InvalidTaskCode"


BAD_PARAMETERS = [
    ("initialModelHash", {"initial_model_hash": b"\0" * 32}),
    ("totalRounds", {"total_rounds": 0}),
    ("minStake", {"min_stake": 0}),
    ("proposerShareBps", {"proposer_share_bps": 0}),
    ("proposerShareBps", {"proposer_share_bps": 10_000}),
    ("maxCommittee", {"max_committee": 1}),
    ("maxCommittee", {"max_committee": 121}),
    ("slashRateBps", {"slash_rate_bps": 10_001}),
    ("voteToleranceBps", {"vote_tolerance_bps": 10_000}),
    ("voteRule", {"vote_rule": b"\0" * 32}),
    ("voterRewardBps", {"voter_reward_bps": 10_001}),
    ("reviewersPerUpdate", {"reviewers_per_update": 120}),
    ("trainingDuration", {"training_duration": 0}),
    ("votingDuration", {"voting_duration": 0}),
    ("revealDuration", {"reveal_duration": 0}),
    ("exitDelay", {"exit_delay": 2**32}),
    ("coordinator", {"coordinator": "0x" + "00" * 20}),
]


@pytest.mark.parametrize(("parameter", "change"), BAD_PARAMETERS)
def test_constructor_rejects_each_bad_parameter(h: Harness, parameter: str, change: dict[str, Any]) -> None:
    # The Python model refuses it first ...
    with pytest.raises(ValidationError):
        TaskConfig(**{**DEFAULTS, "coordinator": h.coordinator, **change})
    # ... and the contract refuses it too when sent raw (the factory passes the error on).
    raw = list(h.config.to_tuple())
    names = list(TaskConfig.model_fields)
    for field, value in change.items():
        raw[names.index(field)] = value
    fn = h.factory.contract.functions.createTask(tuple(raw))
    with pytest.raises(ContractRevert) as info:
        send(h.w3, fn, h.coordinator)
    assert info.value.error == "InvalidParameter"
    assert info.value.params["parameter"].rstrip(b"\0").decode() == parameter
    assert h.factory.tasks() == [h.task.address]
