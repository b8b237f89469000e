"""fedledger audit: tables and JSON from queries and logs, and a verify that catches tampering."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedledger import codec
from fedledger.aggregation.registry import get_strategy
from fedledger.audit.replay import replay
from fedledger.audit.report import verify
from fedledger.audit.source import GatewaySource
from fedledger.contracts import sortition
from fedledger.contracts import typed_data as td
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.proto import gateway_pb2 as pb
from tests.conftest import fedledger
from tests.gateway.conftest import Gateway, start_gateway


def model(seed: int) -> OrderedDict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return OrderedDict(
        [("w", rng.normal(size=(4, 3)).astype(np.float32)), ("b", rng.normal(size=3).astype(np.float32))]
    )


def play(gw: Gateway, bounded: bool = True) -> pb.RoundRoles:
    """One per-update round: three real model updates, the first two accepted, their governed FedAvg published.

    ``bounded=False``: a coordinator that skips the bound (publishes their plain FedAvg).
    """
    gw.register_all()
    gw.client.store_blob(gw.coordinator, codec.encode(model(0)))
    roles = gw.open()
    updates = {p: model(i + 1) for i, p in enumerate(roles.proposers)}
    for p, arrays in updates.items():
        gw.client.submit_update(gw.key(p), 1, codec.encode(arrays), 10 + len(p) % 7)
    gw.vote_all(roles, 0b011)
    gw.reveal_all(roles, 0b011)  # the last reveal finalizes the round
    state = gw.client.round(1)
    accepted = sorted((p.address, p.num_examples) for p in state.proposers if p.accepted)
    # As the coordinator: the governed aggregate (bounded by the median change) from the initial model.
    plugin, pairs = get_strategy("fedavg"), [(updates[a], n) for a, n in accepted]
    aggregate = plugin.governed_aggregate_offline(model(0), pairs) if bounded else plugin.aggregate_offline(None, pairs)
    assert aggregate is not None
    gw.client.propose_model(gw.coordinator, "publishGlobal", 1, codec.encode(aggregate))
    return roles


def audit_cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "audit", "--gateway", gw.server.address, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, pb.RoundRoles]]:
    """One played round shared by the module (tests that tamper restore what they change)."""
    initial = keccak256(codec.encode(model(0)))
    gw = start_gateway(tmp_path_factory.mktemp("audit") / "gateway", initial_model_hash=initial)
    try:
        yield gw, play(gw)
    finally:
        gw.client.close()
        gw.server.stop(grace=1)


def test_verify_passes_on_an_honest_history(played: tuple[Gateway, pb.RoundRoles]) -> None:
    gw, roles = played
    source = GatewaySource(gw.client)
    events = source.events()
    state = replay(events, source.config)
    report = verify(state, source, len(events))
    assert report.disagreements == [] and report.ok
    assert report.rounds_checked == 1
    assert report.blobs_ok == len(roles.proposers) + 2  # the initial model, the updates, the published global model
    assert report.blobs_corrupted == 0
    result = audit_cli(gw, "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no disagreement" in result.stdout


def test_verify_reports_a_tampered_blob(played: tuple[Gateway, pb.RoundRoles]) -> None:
    gw, _roles = played
    victim = gw.client.round(1).proposers[0].update_hash
    path = gw.server.blobs.path(victim)
    genuine = path.read_bytes()
    path.write_bytes(b"poisoned update")
    try:
        result = audit_cli(gw, "--json", "verify")
        text = audit_cli(gw, "verify")
    finally:
        path.write_bytes(genuine)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["blobs_corrupted"] == 1
    assert any(victim.hex() in line for line in report["disagreements"])
    assert text.returncode == 1 and "DISAGREEMENT" in text.stdout


def test_verify_recomputes_payouts_from_events(played: tuple[Gateway, pb.RoundRoles]) -> None:
    gw, roles = played
    source = GatewaySource(gw.client)
    events = source.events()
    forged = [
        dataclasses.replace(e, args={**e.args, "amount": e.args["amount"] + 1}) if e.name == "Rewarded" else e
        for e in events
    ]
    state = replay(forged, source.config)
    assert any("rewards" in d for d in state.disagreements)
    dropped_vote = [e for e in events if not (e.name == "VoteRevealed" and e.args["voter"] == roles.voters[0])]
    assert any("tallies" in d for d in replay(dropped_vote, source.config).disagreements)

    def swap_roles(args: dict) -> dict:  # the voters' member indices first: proposers and voters trade places
        seats = sortition.unpack(args["committee"], args["numProposers"] + args["numVoters"])
        return {**args, "committee": sortition.pack(seats[args["numProposers"] :] + seats[: args["numProposers"]])}

    shuffled_roles = [dataclasses.replace(e, args=swap_roles(e.args)) if e.name == "RoundOpened" else e for e in events]
    assert any("roles differ" in d for d in replay(shuffled_roles, source.config).disagreements)
    wider = [
        dataclasses.replace(e, args={**e.args, "eligible": [e.args["eligible"][0] | 1 << 200]})
        if e.name == "RoundOpened"
        else e
        for e in events
    ]
    assert any("eligible ones were" in d for d in replay(wider, source.config).disagreements)


def test_verify_recomputes_the_published_global_model(played: tuple[Gateway, pb.RoundRoles]) -> None:
    gw, _roles = played
    source = GatewaySource(gw.client)
    events = [
        dataclasses.replace(e, args={**e.args, "modelHash": b"\x42" * 32}) if e.name == "GlobalPublished" else e
        for e in source.events()
    ]
    report = verify(replay(events, source.config), source, len(events))
    assert any("is not the fedavg aggregate" in d for d in report.disagreements)


def test_verify_catches_a_coordinator_that_publishes_the_unbounded_aggregate(tmp_path: Path) -> None:
    """The attack: a coordinator favours the largest accepted update by skipping the median bound."""
    gw = start_gateway(tmp_path / "gateway", initial_model_hash=keccak256(codec.encode(model(0))))
    try:
        play(gw, bounded=False)
        source = GatewaySource(gw.client)
        events = source.events()
        report = verify(replay(events, source.config), source, len(events))
        assert any("is not the fedavg aggregate" in d for d in report.disagreements)
    finally:
        gw.client.close()
        gw.server.stop(grace=1)


def test_rounds_round_and_participant_reports(played: tuple[Gateway, pb.RoundRoles]) -> None:
    gw, roles = played
    rounds = json.loads(audit_cli(gw, "--json", "rounds").stdout)
    assert len(rounds) == 1 and rounds[0]["round"] == 1 and rounds[0]["finalized"]
    assert rounds[0]["proposers"] == list(roles.proposers) and rounds[0]["tallies"] == [3, 3, -3]
    assert rounds[0]["accepted"] == list(roles.proposers[:2])
    detail = json.loads(audit_cli(gw, "--json", "round", "1").stdout)
    assert [c["accepted"] for c in detail["commitments"]] == [True, True, False]
    assert {v["revealed_bits"] for v in detail["votes"]} == {0b011}
    assert {s["reason"] for s in detail["slashes"]} == {"rejected_update"}
    assert sum(p["amount"] for p in detail["rewards"]) == detail["paid"] > 0
    someone = roles.voters[0]
    person = json.loads(audit_cli(gw, "--json", "participant", someone).stdout)
    assert person["rounds_as_voter"] == [1] and person["total_rewarded"] > 0
    assert person["owed"] == int(gw.client.account(someone).owed_wei)
    assert {"Registered", "Rewarded"} <= {h["event"] for h in person["history"]}
    table = audit_cli(gw, "rounds")
    assert table.returncode == 0 and "rounds" in table.stdout
    missing = audit_cli(gw, "round", "7")
    assert missing.returncode == 1 and "never opened" in missing.stderr


def test_balances_from_the_events_match_the_contracts_books(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "gateway")
    try:
        roles = play(gw)  # the third proposer's update is rejected: it is slashed
        addresses = [k.address for k in gw.participants]

        def books() -> dict[str, tuple[int, int]]:
            return {a: (int(gw.client.account(a).stake_wei), int(gw.client.account(a).owed_wei)) for a in addresses}

        slashed = roles.proposers[2]
        assert gw.client.balances(addresses) == books()
        assert books()[slashed][0] < books()[roles.proposers[0]][0]  # the slash is in the books compared
        voter = gw.key(roles.voters[0])
        assert books()[voter.address][1] > 0
        gw.client.member_action(voter, td.WITHDRAW)
        gw.client.flush(gw.coordinator)
        assert books()[voter.address][1] == 0
        assert gw.client.balances(addresses) == books()
        with pytest.raises(grpc.RpcError) as refused:
            gw.client.balances(["not an address"])
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        gw.client.close()
        gw.server.stop(grace=1)


def assert_fits_80_columns(text: str) -> None:
    assert "…" not in text, text  # nothing cut
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_options_go_before_or_after_the_query_and_one_source_is_needed(played: tuple[Gateway, pb.RoundRoles]) -> None:
    gw, _roles = played
    before = fedledger("audit", "--gateway", gw.server.address, "--json", "rounds")
    after = fedledger("audit", "rounds", "--json", "--gateway", gw.server.address)
    mixed = fedledger("audit", "--gateway", gw.server.address, "rounds", "--json")
    assert before.returncode == after.returncode == mixed.returncode == 0, after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout) == json.loads(mixed.stdout)
    none = fedledger("audit", "rounds")
    assert none.returncode == 1 and "give one of --gateway, --rpc-url" in none.stderr
    two = fedledger("audit", "--gateway", gw.server.address, "rounds", "--run", "somewhere")
    assert two.returncode == 1 and "(got --gateway, --run)" in two.stderr


def test_tables_speak_eth_fit_80_columns_and_show_the_pool(
    played: tuple[Gateway, pb.RoundRoles], tmp_path: Path
) -> None:
    from fedledger.tables import eth

    gw, roles = played
    rounds = audit_cli(gw, "rounds")
    detail = audit_cli(gw, "round", "1")
    task = audit_cli(gw, "task")
    for table in (rounds, detail, task):
        assert table.returncode == 0, table.stderr
        assert_fits_80_columns(table.stdout)
    pool = int(gw.client.task_info().reward_pool_wei)
    assert f"reward pool left: {eth(pool)} ETH" in rounds.stdout
    assert any(line.split() == ["reward", "pool", "left", eth(pool), "ETH"] for line in task.stdout.splitlines())
    assert json.loads(audit_cli(gw, "--json", "task").stdout)["reward_pool"] == pool

    voter = roles.voters[0]
    keystore = tmp_path / "voter.json"  # only the address field is read: no password needed
    keystore.write_text(json.dumps({"address": voter[2:].lower(), "crypto": {}, "version": 3}))
    person = json.loads(audit_cli(gw, "--json", "participant", voter).stdout)
    table = audit_cli(gw, "participant", str(keystore))
    assert table.returncode == 0, table.stderr
    assert_fits_80_columns(table.stdout)
    assert "wei" not in table.stdout and f"rewarded {eth(person['total_rewarded'])} ETH" in table.stdout
    assert "amount ETH" in table.stdout and f"stake {eth(person['stake'])} ETH" in table.stdout
    exact = audit_cli(gw, "participant", voter, "--wei")
    assert f"rewarded {person['total_rewarded']} wei" in exact.stdout
    missing = audit_cli(gw, "participant", str(tmp_path / "nobody.json"))
    assert missing.returncode == 1 and "not an address or a keystore file" in missing.stderr


def test_a_stake_change_shows_its_amount_and_the_stake_after(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "gateway")
    try:
        roles = play(gw)
        voter = gw.key(roles.voters[0])
        before = int(gw.client.account(voter.address).stake_wei)
        gw.client.add_stake(voter, 5 * 10**17)
        gw.client.flush(gw.coordinator)
        person = json.loads(audit_cli(gw, "--json", "participant", voter.address).stdout)
        change = next(h for h in person["history"] if h["event"] == "StakeChanged")
        assert change["amount"] == 5 * 10**17 and change["stake"] == before + 5 * 10**17
        registered = next(h for h in person["history"] if h["event"] == "Registered")
        assert registered["stake"] == registered["amount"] > 0
        table = audit_cli(gw, "participant", voter.address).stdout
        assert "+0.500000" in table, table
    finally:
        gw.client.close()
        gw.server.stop(grace=1)
