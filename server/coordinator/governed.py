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
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.serde import message_to_proto
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedledger import codec
from fedledger.aggregation import sync
from fedledger.aggregation.base import FedledgerStrategy, to_record
from fedledger.contracts.sortition import items_of
from fedledger.contracts.types import VoteMode
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.client import BlobVerificationError, GatewayClient
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.server.gateway.traffic import Bytes

from .binding import Binding
from .results import ClientTraffic, DroppedUpdate, Recorder, RoundResult

log = logging.getLogger(__name__)

Arrays = OrderedDict[str, np.ndarray]
DEADLINE_SLACK = 30.0
"""Seconds past a phase's duration the coordinator keeps trying to move the round on."""
GATEWAY_GONE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
"""What a call answers when the gateway stopped or restarted under it."""
GATEWAY_ATTEMPTS = 3
GATEWAY_RETURN = 120.0
"""Seconds the coordinator waits for a restarted gateway."""
SELF_REVEAL_WAIT = 10.0
"""Seconds the coordinator waits for node agents' own reveals before asking their nodes."""


@dataclass
class _Traffic:
    """Bytes of one round: per client (Flower messages and the client's own gateway calls) and the coordinator's."""

    clients: dict[str, ClientTraffic] = field(default_factory=dict)
    coordinator_start: Bytes = field(default_factory=Bytes)

    def client(self, address: str) -> ClientTraffic:
        return self.clients.setdefault(address, ClientTraffic())

    @property
    def up(self) -> int:
        return sum(c.flower_up + c.gateway_up for c in self.clients.values())

    @property
    def down(self) -> int:
        return sum(c.flower_down + c.gateway_down for c in self.clients.values())


def _message_bytes(message: Message) -> int:
    """The serialized size of a Flower message (content and metadata), as it crosses the wire."""
    return int(message_to_proto(message).ByteSize())


@dataclass
class _Updates:
    arrays: dict[str, tuple[Arrays, int]] = field(default_factory=dict)
    dropped: list[DroppedUpdate] = field(default_factory=list)


class GovernedStrategy(Strategy):
    """Wraps a Flower strategy: it only aggregates; the contract decides who trains, votes and is paid."""

    def __init__(
        self,
        plugin: FedledgerStrategy,
        gateway: GatewayClient,
        coordinator: LocalAccount,
        binding: Binding,
        recorder: Recorder,
        evaluate: Callable[[Arrays], dict[str, float]],
        server_update: Callable[[int, Arrays], Arrays] | None = None,
    ) -> None:
        """Govern ``plugin``'s strategy through ``gateway`` as ``coordinator``, talking to the nodes of ``binding``.

        ``server_update(round, aggregate)`` is the server's own step on every aggregate before it
        is proposed or published (the plug-in's :meth:`~FedledgerStrategy.server_update`).
        """
        self.plugin = plugin
        self.server_update = server_update or (lambda _round, state: state)
        self.inner = plugin.server_strategy()
        self.gateway = gateway
        self.coordinator = coordinator
        self.binding = binding
        self.recorder = recorder
        self.evaluate = evaluate
        self.config = gateway.task().config
        self.states: dict[bytes, Arrays] = {}
        """Global states of this run by hash (what a node may hold, to sync it sparsely)."""
        self.holds: dict[str, bytes] = {}
        """Hash of the state each node last confirmed."""
        self._opened: pb.RoundRoles | None = None
        """The next round, when the transaction closing the previous one opened it (publishAndOpen, openNext)."""

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

    def run(self, grid: Grid, initial: Arrays, num_rounds: int, first_round: int = 1) -> Arrays:
        """Run ``num_rounds`` governed rounds from ``initial``, the first being the task's ``first_round``.

        Returns the final global model.
        """
        global_arrays = initial
        for round_index in range(num_rounds):
            last = round_index == num_rounds - 1
            global_arrays = self.play_round(grid, first_round + round_index, global_arrays, last=last)
        return global_arrays

    def publish_settled(self, r: int, previous: Arrays) -> Arrays:
        """Publish the aggregate of round ``r`` if it was settled without it; return the model to go on from.

        A round cut off by a crash and finalized by ``fedledger round settle`` has its accepted
        updates on chain but no published global model (only the coordinator may publish). The
        aggregate is computed as :meth:`play_round` would have, from ``previous`` (the global
        model the round started from) and the accepted updates fetched by their hashes.
        """
        if r == 0 or self.config.vote_mode is not VoteMode.PER_UPDATE:
            return previous
        state = self.gateway.round(r)
        outcomes = int(state.outcomes)
        if state.phase != "FINALIZED" or not outcomes or self.gateway.events(r, names=("GlobalPublished",)):
            return previous
        updates = self._fetch_updates(state, previous)
        accepted = {p.address for i, p in enumerate(state.proposers) if outcomes >> i & 1}
        usable = {a: u for a, u in updates.arrays.items() if a in accepted}
        if not usable:
            return previous
        aggregate = self._aggregate(r, previous, usable)
        self.gateway.propose_model(self.coordinator, "publishGlobal", r, codec.encode(aggregate))
        self.recorder.event(r, "published a settled round", accepted=len(usable))
        return aggregate

    def play_round(self, grid: Grid, expected_round: int, global_arrays: Arrays, *, last: bool = True) -> Arrays:
        """One governed round; returns the global model after it.

        Unless it is the ``last`` round this coordinator plays, the transaction that closes it also
        opens the next round (per-update: publishAndOpen; aggregate: the finalizing reveal batch,
        asked for by proposeAggregate's openNext).
        """
        started = time.monotonic()
        traffic = _Traffic(coordinator_start=self.gateway.traffic.snapshot())
        self.recorder.event(expected_round, "opening")
        roles, self._opened = self._opened or self._open_round(expected_round), None
        r = roles.round
        proposers, voters = list(roles.proposers), list(roles.voters)
        target = keccak256(codec.encode(global_arrays))
        held = set(self.holds.values())  # older states no node holds can never be a sync base again
        self.states = {h: s for h, s in self.states.items() if h in held} | {target: global_arrays}

        self.recorder.event(r, "training", proposers=len(proposers))
        self._send(
            grid, proposers, MessageType.TRAIN, {"server-round": r}, target, self.config.training_duration, traffic
        )
        # Relay the queued commitments before reading them: clients submit without waiting for their batch.
        state = self._state(r)
        if self.config.vote_mode is VoteMode.PER_UPDATE and state.phase == "TRAINING":
            self._advance_when_due(r, self.config.training_duration, "TRAINING")
            state = self.gateway.round(r)
        updates = self._fetch_updates(state, global_arrays)

        candidate: Arrays | None = None
        items: list[bytes]
        weights: list[int]
        if self.config.vote_mode is VoteMode.AGGREGATE:
            if updates.arrays:
                self.recorder.event(r, "aggregating", updates=len(updates.arrays))
                candidate = self._aggregate(r, global_arrays, updates.arrays)
                blob = codec.encode(candidate)
                self.gateway.propose_model(self.coordinator, "proposeAggregate", r, blob, not last)
                items, weights = [keccak256(blob)], [0]  # the candidate is judged as it is
            else:
                self._advance_when_due(r, self.config.training_duration, "TRAINING")
                items, weights = [], []
        else:
            usable = [p.committed and p.address in updates.arrays for p in state.proposers]
            items = [p.update_hash if ok else b"" for p, ok in zip(state.proposers, usable, strict=True)]
            weights = [p.num_examples if ok else 0 for p, ok in zip(state.proposers, usable, strict=True)]

        evaluations = self._vote(grid, r, voters, (items, weights, proposers), target, traffic, roles.reviewers)
        self.recorder.event(r, "finalizing")
        final = self._state(r)
        if final.phase == "REVEALING":  # else the batch bringing the last reveal finalized it
            self._finalize_when_due(r)
            final = self.gateway.round(r)
        outcomes = int(final.outcomes)

        committed = [p.address for p in final.proposers if p.committed]
        if self.config.vote_mode is VoteMode.PER_UPDATE:
            accepted_addresses = [p.address for i, p in enumerate(final.proposers) if outcomes >> i & 1]
            usable = {a: updates.arrays[a] for a in accepted_addresses if a in updates.arrays}
            decided = int(final.decided or 0)
            seats = [p.address for p in final.proposers]
            undecided = [a for i, a in enumerate(seats) if a in committed and not decided >> i & 1]
            rejected = [a for a in committed if a not in accepted_addresses and a not in undecided]
            tally = [int(p.tally) for p in final.proposers]
            adopted = bool(usable)
            if adopted:
                self.recorder.event(r, "publishing", accepted=len(usable))
                global_arrays = self._aggregate(r, global_arrays, usable)
                blob = codec.encode(global_arrays)
                function = "publishGlobal" if last else "publishAndOpen"
                published = self.gateway.propose_model(self.coordinator, function, r, blob)
                if published.HasField("opened"):
                    self._opened = published.opened
        else:
            adopted = candidate is not None and bool(outcomes & 1)
            accepted_addresses = committed if adopted else []  # the candidate's fate is every proposer's
            undecided = committed if candidate is not None and not int(final.decided or 0) & 1 else []
            rejected = [] if adopted or candidate is None or undecided else committed
            tally = [int(final.proposers[0].tally)] if candidate is not None and final.proposers else []
            if adopted and candidate is not None:
                global_arrays = candidate
            if not last and candidate is not None and final.phase == "FINALIZED":
                # openNext: the finalizing reveal batch opened the next round, unless it could not
                # (too few eligible members); then the next round opens the usual way.
                self._opened = self._roles(r + 1)

        metrics = self.evaluate(global_arrays)
        coordinator = self.gateway.traffic.snapshot()
        result = RoundResult(
            round=r,
            accepted=adopted,
            tally=tally,
            proposers=proposers,
            rejected=rejected,
            undecided=undecided,
            voters=voters,
            reviewers=roles.reviewers,
            evaluations=evaluations,
            dropped=updates.dropped,
            metrics=metrics,
            accepted_proposers=accepted_addresses,
            gas_used=self.gateway.round(r, brief=True, gas=True).gas_used,
            bytes_up=traffic.up,
            bytes_down=traffic.down,
            traffic=traffic.clients,
            coordinator_gateway_bytes=(
                coordinator.sent - traffic.coordinator_start.sent
                + coordinator.received - traffic.coordinator_start.received
            ),
            wall_s=round(time.monotonic() - started, 3),
            **self._balances(),
        )  # fmt: skip
        self.recorder.round_done(result)
        return global_arrays

    # ------------------------------------------------------------------ pieces

    def _balances(self) -> dict[str, dict[str, int]]:
        """Each bound participant's stake and credited (not yet withdrawn) balance, for the round's record."""
        balances = self.gateway.balances(sorted(self.binding.nodes))
        return {
            "stakes": {a: stake for a, (stake, _owed) in balances.items()},
            "credited": {a: owed for a, (_stake, owed) in balances.items()},
        }

    def _roles(self, round_: int) -> pb.RoundRoles | None:
        """The roles of ``round_`` if it is open already (from the gateway's round state), else None."""
        state = self.gateway.round()
        if state.round != round_:
            return None
        return pb.RoundRoles(
            round=round_,
            seed=state.seed,
            proposers=[p.address for p in state.proposers],
            voters=[v.address for v in state.voters],
            deadline=state.deadline,
            reviewers=state.reviewers,
        )

    def _open_round(self, expected_round: int) -> pb.RoundRoles:
        """Open the next round, across a gateway restart.

        If the gateway went away during the call (UNAVAILABLE, or CANCELLED by its shutdown), the
        chain says whether the transaction made it: then the drawn roles are read back, else the
        round is opened again with a freshly signed transaction.
        """
        for _ in range(GATEWAY_ATTEMPTS - 1):
            try:
                return self.gateway.open_round(self.coordinator)
            except grpc.RpcError as exc:
                if exc.code() not in GATEWAY_GONE:
                    raise
                log.warning("gateway went away while opening round %d (%s); retrying", expected_round, exc.code())
                self.gateway.wait_ready(timeout=GATEWAY_RETURN)
                if self.gateway.task_info().current_round >= expected_round:
                    roles = self._roles(expected_round)
                    if roles is not None:
                        return roles
        return self.gateway.open_round(self.coordinator)

    def _sync_base(self, address: str) -> bytes:
        """The state a node's payload patches: the one it last confirmed, or b"" (whole / blank)."""
        base = self.holds.get(address, b"")
        return base if self.plugin.sparse_sync and base in self.states else b""

    def _payload(self, base: bytes, target: bytes) -> ArrayRecord:
        """The record that turns state ``base`` (b"": nothing) into state ``target``."""
        state = self.states[target]
        if not self.plugin.sparse_sync:
            return to_record(state)
        known = self.states[base] if base else self.plugin.blank_state()
        assert known is not None, "a sparse-sync strategy defines its blank state"
        return to_record(sync.diff(known, state))

    def _send(
        self,
        grid: Grid,
        addresses: list[str],
        kind: str,
        config: dict,
        target: bytes | None,
        timeout: float,
        traffic: _Traffic,
        configs: dict[str, dict] | None = None,
    ) -> list[Message]:
        """Send one message per bound address and wait (at most ``timeout``) for the replies.

        With ``target`` (the hash of a state in :attr:`states`), each node gets what it needs to
        hold that state (``sync-base`` names the state the payload patches, empty for a whole
        state or a patch of the blank one; ``sync-target`` is the hash the node must arrive at);
        nodes with the same base share one payload. Every message's bytes, and the bytes of the
        gateway calls each node reports, are added to ``traffic``.
        """
        payloads: dict[bytes, ArrayRecord] = {}
        messages, recipients = [], {}
        for address in addresses:
            node = self.binding.node_of(address)
            if node is None:
                continue  # drawn, but no node proved this address: it will miss its turn
            content = RecordDict({"config": ConfigRecord(dict(configs[address] if configs else config))})
            if target is not None:
                base = self._sync_base(address)
                if base not in payloads:
                    payloads[base] = self._payload(base, target)
                content["arrays"] = payloads[base]
                content["config"]["sync-base"] = base
                content["config"]["sync-target"] = target
            messages.append(Message(content=content, message_type=kind, dst_node_id=node))
            recipients[node] = address
        if not messages:
            return []
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        for message in messages:
            traffic.client(recipients[message.metadata.dst_node_id]).flower_down += _message_bytes(message)
        for reply in replies:
            address = recipients.get(reply.metadata.src_node_id)
            if address is None:
                continue
            usage = traffic.client(address)
            usage.flower_up += _message_bytes(reply)
            if reply.has_error():
                log.warning("node %d failed: %s", reply.metadata.src_node_id, reply.error.reason)
                self.holds.pop(address, None)  # it may hold anything now
                continue
            metrics = reply.content.metric_records.get("metrics") if reply.content.metric_records else None
            if metrics is not None:
                usage.gateway_up += int(metrics.get("gateway-bytes-sent", 0))
                usage.gateway_down += int(metrics.get("gateway-bytes-received", 0))
            if target is not None:
                self.holds[address] = target
        return replies

    def _fetch_updates(self, state: pb.RoundState, global_arrays: Arrays) -> _Updates:
        """Every committed update of the round ``state`` shows, fetched by its on-chain hash, decoded and checked.

        The blobs are fetched concurrently, then checked in proposer order.
        """
        updates = _Updates()
        committed = [p for p in state.proposers if p.committed]
        blobs = self.gateway.fetch_blobs([p.update_hash for p in committed])
        for p, blob in zip(committed, blobs, strict=True):
            try:
                if isinstance(blob, Exception):
                    raise blob
                arrays = codec.decode(blob)
                self.plugin.check_update(global_arrays, arrays)
            except (grpc.RpcError, BlobVerificationError, codec.CodecError, ValueError) as exc:
                reason = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
                updates.dropped.append(DroppedUpdate(address=p.address, reason=reason or type(exc).__name__))
                continue
            updates.arrays[p.address] = (arrays, p.num_examples)
        return updates

    def _aggregate(self, r: int, previous: Arrays, updates: dict[str, tuple[Arrays, int]]) -> Arrays:
        """The plug-in's governed aggregate of ``updates`` in proposer-address order, then the server's step."""
        ordered = [updates[address] for address in sorted(updates)]
        per_update = self.config.vote_mode is VoteMode.PER_UPDATE
        return self.server_update(
            r, self.plugin.governed_aggregate(self.inner, r, previous, ordered, per_update=per_update)
        )

    def _vote(
        self,
        grid: Grid,
        r: int,
        voters: list[str],
        ballot: tuple[list[bytes], list[int], list[str]],
        target: bytes,
        traffic: _Traffic,
        reviewers: int,
    ) -> int:
        """Voters judge their items (with example counts and proposers), commit, then reveal once voting closed.

        Per update, each voter is sent only the updates assigned to it (``reviewers`` per update, see
        :func:`~fedledger.contracts.sortition.items_of`), in the bit order of its vote. Returns how
        many items the voters were sent to judge.
        """
        items, weights, proposers = ballot
        if self._phase(r) != "VOTING":
            return 0  # nothing to judge: the contract skipped voting
        per_update = self.config.vote_mode is VoteMode.PER_UPDATE
        configs = {}
        for j, voter in enumerate(voters):
            mine = items_of(j, len(proposers), len(voters), reviewers or len(voters)) if per_update else [0]
            configs[voter] = {
                "server-round": r,
                "action": "vote",
                "items": [items[i] for i in mine],
                "weights": [weights[i] for i in mine],
                "proposers": [proposers[i] for i in mine] if per_update else proposers,
            }
        evaluations = sum(1 for c in configs.values() for item in c["items"] if item)
        self.recorder.event(r, "voting", voters=len(voters), items=sum(1 for i in items if i), evaluations=evaluations)
        self._send(grid, voters, MessageType.EVALUATE, {}, target, self.config.voting_duration, traffic, configs)
        full = self._state(r)
        if full.phase == "VOTING":
            self._advance_when_due(r, self.config.voting_duration, "VOTING")
            full = self.gateway.round(r)
        committed = [v.address for v in full.voters if v.commitment]
        if committed and full.phase == "REVEALING":
            self.recorder.event(r, "revealing", committed=len(committed))
            unrevealed = self._await_self_reveals(r, committed)
            if not unrevealed:
                return evaluations
            self._send(
                grid,
                unrevealed,
                MessageType.EVALUATE,
                {"server-round": r, "action": "reveal"},
                None,
                self.config.reveal_duration,
                traffic,
            )
        return evaluations

    def _await_self_reveals(self, r: int, committed: list[str]) -> list[str]:
        """Give the node agents of self-revealing voters (live nodes) time to reveal; return who still has to be asked.

        Asking costs a fresh ClientApp process per node on a live SuperNode; an agent reveals
        within a flush window of the round entering REVEALING.
        """
        waiting = [a for a in committed if a in self.binding.self_revealing]
        if not waiting:
            return committed
        give_up = time.monotonic() + SELF_REVEAL_WAIT
        while True:
            state = self._state(r)
            revealed = {v.address for v in state.voters if v.revealed}
            if state.phase != "REVEALING":
                return []  # every reveal is in: the last one finalized the round
            if all(a in revealed for a in waiting) or time.monotonic() > give_up:
                return [a for a in committed if a not in revealed]
            time.sleep(0.2)

    def _retry_until_due(
        self, action: Callable[[], object], duration: float, needed: Callable[[], bool] = lambda: True
    ) -> None:
        """Call ``action`` until the contract accepts it (a phase's deadline may still be ahead).

        ``needed`` is asked before every try: once it says no (the round moved on by itself, e.g.
        the last commitment of a relayed batch advanced it), nothing is done. Without that check
        a late advance would skip the phase the round had just entered.
        """
        give_up = time.monotonic() + duration + DEADLINE_SLACK
        while True:
            if not needed():
                return
            try:
                action()
                return
            except grpc.RpcError as exc:
                not_yet = exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "PhaseNotOver" in (exc.details() or "")
                if not not_yet or time.monotonic() > give_up:
                    raise
                time.sleep(1.0)

    def _phase(self, r: int) -> str:
        """The round's phase once the gateway relayed every queued action."""
        return self._state(r, brief=True).phase

    def _state(self, r: int, *, brief: bool = False) -> pb.RoundState:
        """The round's state once the gateway relayed every queued action.

        The flush's transaction invalidated the gateway's cache, so this reads the chain.
        """
        self.gateway.flush(self.coordinator)
        return self.gateway.round(r, brief=brief)

    def _advance_when_due(self, r: int, duration: float, leaving: str) -> None:
        """Move round ``r`` out of phase ``leaving`` once its deadline passed (unless it already left it)."""
        self.recorder.event(r, "waiting for deadline")
        self._retry_until_due(
            lambda: self.gateway.advance_phase(self.coordinator, r), duration, lambda: self._phase(r) == leaving
        )

    def _finalize_when_due(self, r: int) -> None:
        """Finalize ``r`` unless the batch bringing its last reveal did (wait out the reveal deadline otherwise)."""
        self._retry_until_due(
            lambda: self.gateway.finalize_round(self.coordinator, r),
            self.config.reveal_duration,
            lambda: self._phase(r) == "REVEALING",
        )
