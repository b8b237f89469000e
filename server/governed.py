"""GovernedStrategy: any registered strategy, run as rounds governed by the task contract.

The round of DESIGN §2: open the round on chain (sortition draws proposers and voters), train
the proposers only, fetch each committed update from the blob store by its on-chain hash
(dropping and reporting any that cannot be fetched or decoded), aggregate with the wrapped
strategy, let the voters judge by commit-reveal, finalize, then

- per_update: aggregate the accepted updates and publish the new global model's hash;
- aggregate (arXiv:2307.00543): adopt the candidate if accepted, else keep the previous model.

Deadlines are the contract's: a proposer or voter that never answers costs the phase's
duration, after which the coordinator advances the round (the contract slashes as it rules).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedledger import codec
from fedledger.contracts.types import VoteMode

from .binding import Binding
from .blobstore import keccak256
from .client import BlobVerificationError, GatewayClient
from .results import DroppedUpdate, Recorder, RoundResult

log = logging.getLogger(__name__)

Arrays = OrderedDict[str, np.ndarray]
DEADLINE_SLACK = 30.0
"""Seconds past a phase's duration the coordinator keeps trying to move the round on."""


def to_record(arrays: Arrays) -> ArrayRecord:
    """Arrays as a Flower ArrayRecord."""
    return ArrayRecord(OrderedDict((name, Array(np.ascontiguousarray(value))) for name, value in arrays.items()))


def from_record(record: ArrayRecord) -> Arrays:
    """A Flower ArrayRecord as numpy arrays."""
    return OrderedDict((name, array.numpy()) for name, array in record.items())


@dataclass
class _Traffic:
    up: int = 0
    down: int = 0


@dataclass
class _Updates:
    arrays: dict[str, tuple[Arrays, int]] = field(default_factory=dict)
    dropped: list[DroppedUpdate] = field(default_factory=list)


class GovernedStrategy(Strategy):
    """Wraps a Flower strategy: it only aggregates; the contract decides who trains, votes and is paid."""

    def __init__(
        self,
        inner: Strategy,
        gateway: GatewayClient,
        coordinator: LocalAccount,
        binding: Binding,
        recorder: Recorder,
        evaluate: Callable[[Arrays], dict[str, float]],
    ) -> None:
        """Govern ``inner`` through ``gateway`` as ``coordinator``, talking to the nodes of ``binding``."""
        self.inner = inner
        self.gateway = gateway
        self.coordinator = coordinator
        self.binding = binding
        self.recorder = recorder
        self.evaluate = evaluate
        self.config = gateway.task().config

    # The wrapped strategy keeps its own configure/aggregate behaviour for plain Flower use.
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Delegated to the wrapped strategy."""
        return list(self.inner.configure_train(server_round, arrays, config, grid))

    def aggregate_train(self, server_round: int, replies: object) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegated to the wrapped strategy."""
        return self.inner.aggregate_train(server_round, replies)  # type: ignore[arg-type]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Delegated to the wrapped strategy."""
        return list(self.inner.configure_evaluate(server_round, arrays, config, grid))

    def aggregate_evaluate(self, server_round: int, replies: object) -> MetricRecord | None:
        """Delegated to the wrapped strategy."""
        return self.inner.aggregate_evaluate(server_round, replies)  # type: ignore[arg-type]

    def summary(self) -> None:
        """Delegated to the wrapped strategy."""
        self.inner.summary()

    # ------------------------------------------------------------------ the loop

    def run(self, grid: Grid, initial: Arrays, num_rounds: int) -> Arrays:
        """Run ``num_rounds`` governed rounds from ``initial``; return the final global model."""
        global_arrays = initial
        for round_index in range(num_rounds):
            global_arrays = self.play_round(grid, round_index + 1, global_arrays)
        return global_arrays

    def play_round(self, grid: Grid, expected_round: int, global_arrays: Arrays) -> Arrays:
        """One governed round; returns the global model after it."""
        started = time.monotonic()
        traffic = _Traffic()
        self.recorder.event(expected_round, "opening")
        roles = self.gateway.open_round(self.coordinator)
        r = roles.round
        proposers, voters = list(roles.proposers), list(roles.voters)
        model_bytes = len(codec.encode(global_arrays))

        self.recorder.event(r, "training", proposers=len(proposers))
        self._send(
            grid, proposers, MessageType.TRAIN, {"server-round": r}, global_arrays, self.config.training_duration
        )
        traffic.down += model_bytes * len(proposers)
        state = self.gateway.round(r, brief=True)
        if self.config.vote_mode is VoteMode.PER_UPDATE and state.phase == "TRAINING":
            self._advance_when_due(r, self.config.training_duration)
        updates = self._fetch_updates(r, traffic)

        candidate: Arrays | None = None
        items: list[bytes]
        weights: list[int]
        if self.config.vote_mode is VoteMode.AGGREGATE:
            if updates.arrays:
                self.recorder.event(r, "aggregating", updates=len(updates.arrays))
                candidate = self._aggregate(r, updates.arrays)
                blob = codec.encode(candidate)
                self.gateway.propose_model(self.coordinator, "proposeAggregate", r, blob)
                traffic.up += len(blob)
                items, weights = [keccak256(blob)], [0]  # the candidate is judged as it is
            else:
                self._advance_when_due(r, self.config.training_duration)
                items, weights = [], []
        else:
            full = self.gateway.round(r)
            usable = [p.committed and p.address in updates.arrays for p in full.proposers]
            items = [p.update_hash if ok else b"" for p, ok in zip(full.proposers, usable, strict=True)]
            weights = [p.num_examples if ok else 0 for p, ok in zip(full.proposers, usable, strict=True)]

        self._vote(grid, r, voters, items, weights, global_arrays, traffic, model_bytes)
        self.recorder.event(r, "finalizing")
        self._finalize_when_due(r)
        final = self.gateway.round(r)
        outcomes = int(final.outcomes)

        committed = [p.address for p in final.proposers if p.committed]
        if self.config.vote_mode is VoteMode.PER_UPDATE:
            accepted_addresses = [p.address for i, p in enumerate(final.proposers) if outcomes >> i & 1]
            usable = {a: updates.arrays[a] for a in accepted_addresses if a in updates.arrays}
            rejected = [a for a in committed if a not in accepted_addresses]
            tally = [int(p.tally) for p in final.proposers]
            adopted = bool(usable)
            if adopted:
                self.recorder.event(r, "publishing", accepted=len(usable))
                global_arrays = self._aggregate(r, usable)
                blob = codec.encode(global_arrays)
                self.gateway.propose_model(self.coordinator, "publishGlobal", r, blob)
                traffic.up += len(blob)
        else:
            adopted = candidate is not None and bool(outcomes & 1)
            rejected = [] if adopted or candidate is None else committed
            tally = [int(final.proposers[0].tally)] if candidate is not None and final.proposers else []
            if adopted and candidate is not None:
                global_arrays = candidate

        metrics = self.evaluate(global_arrays)
        result = RoundResult(
            round=r,
            accepted=adopted,
            tally=tally,
            proposers=proposers,
            rejected=rejected,
            voters=voters,
            dropped=updates.dropped,
            metrics=metrics,
            gas_used=self.gateway.round(r, brief=True, gas=True).gas_used,
            bytes_up=traffic.up,
            bytes_down=traffic.down,
            wall_s=round(time.monotonic() - started, 3),
            stakes={a: int(self.gateway.account(a).stake_wei) for a in sorted(self.binding.nodes)},
        )
        self.recorder.round_done(result)
        return global_arrays

    # ------------------------------------------------------------------ pieces

    def _send(
        self, grid: Grid, addresses: list[str], kind: str, config: dict, arrays: Arrays | None, timeout: float
    ) -> list[Message]:
        """Send one message per bound address and wait (at most ``timeout``) for the replies."""
        record = to_record(arrays) if arrays is not None else None
        messages = []
        for address in addresses:
            node = self.binding.node_of(address)
            if node is None:
                continue  # drawn, but no node proved this address: it will miss its turn
            content = RecordDict({"config": ConfigRecord(dict(config))})
            if record is not None:
                content["arrays"] = record
            messages.append(Message(content=content, message_type=kind, dst_node_id=node))
        if not messages:
            return []
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        for reply in replies:
            if reply.has_error():
                log.warning("node %d failed: %s", reply.metadata.src_node_id, reply.error.reason)
        return replies

    def _fetch_updates(self, r: int, traffic: _Traffic) -> _Updates:
        """Every committed update, fetched by its on-chain hash, decoded and checked against the model."""
        updates = _Updates()
        state = self.gateway.round(r)
        for p in state.proposers:
            if not p.committed:
                continue
            try:
                blob = self.gateway.fetch_blob(p.update_hash)
                arrays = codec.decode(blob)
            except (grpc.RpcError, BlobVerificationError, codec.CodecError) as exc:
                reason = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
                updates.dropped.append(DroppedUpdate(address=p.address, reason=reason or type(exc).__name__))
                continue
            traffic.up += len(blob)
            updates.arrays[p.address] = (arrays, p.num_examples)
        return updates

    def _aggregate(self, r: int, updates: dict[str, tuple[Arrays, int]]) -> Arrays:
        """The wrapped strategy's aggregate of ``updates``, in proposer-address order (deterministic)."""
        replies = []
        for address in sorted(updates):
            arrays, num_examples = updates[address]
            content = RecordDict({"arrays": to_record(arrays), "metrics": MetricRecord({"num-examples": num_examples})})
            node = self.binding.node_of(address) or 0
            replies.append(Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node))
        aggregated, _metrics = self.inner.aggregate_train(r, replies)
        if aggregated is None:
            raise RuntimeError(f"strategy {type(self.inner).__name__} returned no aggregate in round {r}")
        return from_record(aggregated)

    def _vote(
        self,
        grid: Grid,
        r: int,
        voters: list[str],
        items: list[bytes],
        weights: list[int],
        global_arrays: Arrays,
        traffic: _Traffic,
        model_bytes: int,
    ) -> None:
        """Voters judge the items, commit, then reveal once voting closed."""
        state = self.gateway.round(r, brief=True)
        if state.phase != "VOTING":
            return  # nothing to judge: the contract skipped voting
        self.recorder.event(r, "voting", voters=len(voters), items=sum(1 for i in items if i))
        config = {"server-round": r, "action": "vote", "items": items, "weights": weights}
        self._send(grid, voters, MessageType.EVALUATE, config, global_arrays, self.config.voting_duration)
        self.gateway.flush(self.coordinator)
        traffic.down += (model_bytes + sum(1 for i in items if i) * model_bytes) * len(voters)
        if self.gateway.round(r, brief=True).phase == "VOTING":
            self._advance_when_due(r, self.config.voting_duration)
        full = self.gateway.round(r)
        committed = [v.address for v in full.voters if v.commitment]
        if committed and full.phase == "REVEALING":
            self.recorder.event(r, "revealing", committed=len(committed))
            self._send(
                grid,
                committed,
                MessageType.EVALUATE,
                {"server-round": r, "action": "reveal"},
                None,
                self.config.reveal_duration,
            )

    def _retry_until_due(self, action: Callable[[], object], duration: float) -> None:
        """Call ``action`` until the contract accepts it (a phase's deadline may still be ahead)."""
        give_up = time.monotonic() + duration + DEADLINE_SLACK
        while True:
            try:
                action()
                return
            except grpc.RpcError as exc:
                not_yet = exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "PhaseNotOver" in (exc.details() or "")
                if not not_yet or time.monotonic() > give_up:
                    raise
                time.sleep(1.0)

    def _advance_when_due(self, r: int, duration: float) -> None:
        self.recorder.event(r, "waiting for deadline")
        self._retry_until_due(lambda: self.gateway.advance_phase(self.coordinator, r), duration)

    def _finalize_when_due(self, r: int) -> None:
        self._retry_until_due(lambda: self.gateway.finalize_round(self.coordinator, r), self.config.reveal_duration)
