"""`fedledger round settle`: anyone finishes a round a crashed coordinator left, once its deadlines passed."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from fedledger import codec
from fedledger.aggregation.registry import get_strategy
from fedledger.audit.replay import replay
from fedledger.audit.report import verify
from fedledger.audit.source import GatewaySource
from fedledger.client.lifecycle import GatewayBackend, RoundState, settle_round
from fedledger.contracts.types import Phase
from fedledger.errors import CommandError
from fedledger.server.coordinator.binding import Binding
from fedledger.server.coordinator.governed import GovernedStrategy
from fedledger.server.coordinator.results import Recorder
from tests.gateway.conftest import Gateway, start_gateway
from tests.gateway.test_audit import model

from ..conftest import fedledger

DURATION = 2


def _wait_out_the_phase(gw: Gateway) -> None:
    """Until the chain's clock is past the current phase's deadline."""
    deadline = int(gw.client.round(brief=True).deadline)
    give_up = time.monotonic() + 30
    while int(gw.client.round(brief=True).chain_time) <= deadline:
        assert time.monotonic() < give_up, "the chain's clock never passed the deadline"
        time.sleep(0.3)


def test_settle_refuses_while_a_deadline_is_ahead_then_finalizes_and_the_coordinator_publishes(
    tmp_path: Path,
) -> None:
    gw = start_gateway(  # quorum 1: one revealed vote gives a verdict (one committed vote stays unrevealed)
        tmp_path / "gateway", training_duration=DURATION, voting_duration=DURATION, reveal_duration=DURATION, quorum=1
    )
    try:
        gw.register_all()
        roles = gw.open()
        for i, p in enumerate(roles.proposers):
            gw.client.submit_update(gw.key(p), roles.round, codec.encode(model(i + 1)), 10, wait=False)
        anyone = GatewayBackend(gw.client, gw.participants[0])
        with pytest.raises(CommandError, match=r"round 1 is (training|voting) until its deadline, 0m 0[0-2]s from now"):
            settle_round(anyone, 1)
        _wait_out_the_phase(gw)
        # Two voters commit (accepting everything they review); only the first will reveal.
        state = gw.client.round(roles.round)
        if state.phase == "TRAINING":
            with pytest.raises(CommandError, match=r"done: training ended in 0x"):
                settle_round(anyone, 1)  # training ends; voting's deadline is ahead now
        accept = {v.address: (1 << len(v.items)) - 1 for v in gw.client.round(roles.round).voters}
        committing = list(roles.voters[:2])
        salts = {v: secrets.token_bytes(32) for v in committing}
        for v in committing:
            gw.client.commit_vote(gw.key(v), roles.round, accept[v], salts[v])
        _wait_out_the_phase(gw)
        with pytest.raises(CommandError, match=r"round 1 is revealing until its deadline.*done: voting ended in 0x"):
            settle_round(anyone, 1)
        gw.client.reveal_vote(gw.key(committing[0]), roles.round, accept[committing[0]], salts[committing[0]])
        assert gw.client.round(roles.round, brief=True).phase == "REVEALING"  # one committed vote is unrevealed
        _wait_out_the_phase(gw)
        message = settle_round(anyone, 1)
        assert message.startswith("round 1 settled: finalized in 0x")
        final = gw.client.round(roles.round)
        assert final.phase == "FINALIZED" and int(final.outcomes) > 0
        slashed = {e.args_json for e in gw.client.events(roles.round, names=("Slashed",))}
        assert any(committing[1] in s for s in slashed)  # committed, never revealed: the contract's rule
        with pytest.raises(CommandError, match="round 1 is settled already"):
            settle_round(anyone, 1)
        with pytest.raises(CommandError, match="round 4 has not been opened"):
            settle_round(anyone, 4)

        # The resuming coordinator publishes the settled round's aggregate, once.
        strategy = GovernedStrategy(
            get_strategy("fedavg"), gw.client, gw.coordinator, Binding(), Recorder(tmp_path / "run"), lambda _a: {}
        )
        previous = model(0)
        after = strategy.publish_settled(1, previous)
        assert codec.encode(after) != codec.encode(previous)
        assert len(gw.client.events(1, names=("GlobalPublished",))) == 1
        assert strategy.publish_settled(1, after) is after  # published already: nothing more
        assert len(gw.client.events(1, names=("GlobalPublished",))) == 1
        source = GatewaySource(gw.client)
        events = source.events()
        assert verify(replay(events, source.config), source, len(events)).disagreements == []

        # The command line: one clear line and exit 1 on a settled round.
        key_file = tmp_path / "key.hex"
        key_file.write_text(gw.participants[1].key.hex())
        cli = fedledger("round", "settle", "1", "--gateway", gw.server.address, "--keystore", str(key_file))
        assert cli.returncode == 1 and "round 1 is settled already" in cli.stdout + cli.stderr
    finally:
        gw.client.close()
        gw.server.stop(grace=1)


@pytest.mark.anvil
def test_settle_straight_on_an_anvil_node_with_rpc_url(tmp_path: Path) -> None:
    """`--rpc-url --deployment`: no gateway; the idle dev chain's clock is moved by a mined block."""
    from eth_account import Account

    from fedledger.client.lifecycle import RpcBackend
    from fedledger.contracts.bindings import FLTaskContract
    from fedledger.contracts.types import TaskConfig
    from fedledger.deploy.anvil import AnvilNode
    from fedledger.deploy.chain import connect, use_account
    from fedledger.deploy.deployer import deploy_task

    from ..conftest import require_anvil

    require_anvil()
    Account.enable_unaudited_hdwallet_features()
    mnemonic = "test test test test test test test test test test test junk"
    keys = [Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}") for i in range(6)]
    with AnvilNode(accounts=6) as node:
        w3 = connect(node.url)
        coordinator = use_account(w3, keys[0])
        config = TaskConfig(
            initial_model_hash=b"\x01" * 32, coordinator=coordinator, max_committee=4,
            training_duration=DURATION, voting_duration=DURATION, reveal_duration=DURATION,
        )  # fmt: skip
        manifest, _ = deploy_task(w3, coordinator, config, rpc_url=node.url)
        manifest.save(tmp_path / "deployment.json")
        task = FLTaskContract(w3, manifest.task.address)
        for key in keys[1:5]:
            task.register(use_account(w3, key), 2 * 10**18)
        task.open_round(coordinator)  # then the coordinator "crashes": nobody acts in round 1
        anyone = RpcBackend(node.url, tmp_path / "deployment.json", keys[5])
        with pytest.raises(CommandError, match="round 1 is training until its deadline"):
            settle_round(anyone, 1)
        for _ in range(3):  # training, then revealing: no update means nothing to vote on
            time.sleep(DURATION + 1)
            try:
                message = settle_round(anyone, 1)
                break
            except CommandError as exc:
                assert "until its deadline" in str(exc)
        assert message.startswith("round 1 settled:") and "finalized in 0x" in message
        assert task.round_info().phase.name == "FINALIZED"


class _BoundaryChain:
    """A backend whose clock says a deadline passed while the chain's next block is a second earlier."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    def current_round(self) -> RoundState:
        return RoundState(2, Phase.VOTING, (), (), deadline=1_000)

    def chain_time(self) -> int:
        return 1_001

    def settle_step(self, function: str, round_: int) -> str:
        self.steps.append(function)
        raise RuntimeError("gateway answered FAILED_PRECONDITION: the contract refuses it: PhaseNotOver(deadline=1000)")


def test_a_step_the_chain_still_finds_early_is_the_deadline_refusal_not_an_error() -> None:
    chain = _BoundaryChain()
    with pytest.raises(CommandError, match=r"round 2 is voting until its deadline, 0m 01s from now"):
        settle_round(chain, 2)  # type: ignore[arg-type]
    assert chain.steps == ["advancePhase"]
