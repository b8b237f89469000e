"""A client's work without Flower: join, train, submit through a real gateway, and vote by the rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.client.participant import Participant
from fedledger.config import RunSettings
from fedledger.contracts import typed_data as td
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.simulation.tasks import TrainSettings, get_task, model_arrays
from tests.gateway.conftest import Gateway, start_gateway


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path / "gateway", participants=6)
    try:
        yield gateway
    finally:
        gateway.client.close()
        gateway.server.stop(grace=1)


def settings(gw: Gateway, **changes: object) -> RunSettings:
    return RunSettings(num_clients=6, seed=1, gateway=gw.server.address, **changes)  # type: ignore[arg-type]


def test_join_proves_the_address_and_signs_a_registration(gw: Gateway) -> None:
    me = Participant(settings(gw), 2)
    assert me.address == gw.participants[2].address  # dev key partition + 1
    signature, register_tx = me.join(node_id=77, challenge=b"\x05" * 32)
    message = td.node_binding_message(me.address, 77, b"\x05" * 32)
    domain = gw.client.task().domain
    assert td.verify(td.SignedAction(td.NODE_BINDING, message, signature), domain)
    assert not td.verify(td.SignedAction(td.NODE_BINDING, {**message, "nodeId": 78}, signature), domain)
    assert gw.client.send_transaction(register_tx).events[0].name == "Registered"
    assert me.join(node_id=77, challenge=b"\x06" * 32)[1] == b""  # already a member: nothing to register


def test_honest_updates_pass_and_a_scaled_attack_fails_the_vote(gw: Gateway) -> None:
    honest = settings(gw, attackers="", attack="")
    attacked = settings(gw, attackers="0", attack="scale:-10")
    people = {pid: Participant(attacked if pid == 0 else honest, pid) for pid in range(6)}
    for person in people.values():
        gw.client.send_transaction(person.join(1, b"\0" * 32)[1])
    roles = gw.open()
    by_address = {p.address: p for p in people.values()}
    # Start from a model trained a little, as after round 1: an untrained baseline scores at chance,
    # where a voter cannot tell noise from poison (docs/decisions.md).
    task = get_task("digits")
    warm = task.build_model(1)
    task.fit(warm, task.client_data(5, 6, "iid", 1).train, TrainSettings(local_epochs=3, seed=4))
    global_arrays = model_arrays(warm)
    for address in roles.proposers:
        trained, n, _metrics = by_address[address].train(1, global_arrays)
        assert by_address[address].submit(1, trained, n).status == pb.QUEUED
    gw.client.flush(gw.coordinator)  # the batch may already be out: the last commitment completed it
    state = gw.client.round(1)
    assert all(p.committed for p in state.proposers)
    assert state.phase == "VOTING"
    items = [p.update_hash for p in state.proposers]
    weights = [p.num_examples for p in state.proposers]
    attackers = {people[0].address}
    voter = by_address[roles.voters[0]]
    for rule in ("share", "reference"):  # fetched from the blob store, judged by either rule
        vote = voter.decide(1, global_arrays, items, weights, rule=rule, tolerance_bps=500, proposers=roles.proposers)
        for i, proposer in enumerate(roles.proposers):
            assert bool(vote.bits >> i & 1) is (proposer not in attackers), (rule, proposer, vote)
        assert vote.bits == vote.honest_bits and vote.reveal  # an honest voter commits its judgement
    result, salt = voter.commit_vote(1, vote.bits, wait=True)
    assert result.status == pb.INCLUDED and len(salt) == 32
