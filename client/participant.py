"""What one client does in a governed round, apart from Flower's message plumbing.

It trains with its strategy's client algorithm (poisoned when it is a simulated attacker),
submits the update through the gateway, and votes by the paper's rule: accept an item when
its score on the local validation split is at least (1 - eps) times the previous global
model's score, with commit-reveal through the gateway.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from eth_account.signers.local import LocalAccount

from fedledger import codec
from fedledger.aggregation.registry import get_strategy
from fedledger.config import RunSettings
from fedledger.contracts import typed_data as td
from fedledger.keys import load_key
from fedledger.server.client import BlobVerificationError, GatewayClient
from fedledger.server.proto import gateway_pb2 as pb
from fedledger.simulation.attacks import Attack, parse_attack
from fedledger.simulation.tasks import TrainSettings, get_task
from fedledger.simulation.tasks.base import ClientData, derived_seed

from .data import parse_data_spec
from .identity import node_key

Arrays = OrderedDict[str, np.ndarray]
BPS = 10_000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vote:
    """A voter's decision on the items of a round."""

    bits: int
    score_global: float
    scores: tuple[float | None, ...]


@functools.cache
def _gateway(address: str) -> GatewayClient:
    return GatewayClient(address, timeout=300, reconnect=True)


def round_seed(seed: int, round_: int, partition_id: int) -> int:
    """A training seed that differs per run seed, round and client, identically in every process."""
    return derived_seed(seed, round_, partition_id)


class Participant:
    """One simulated (or live) client."""

    def __init__(
        self,
        settings: RunSettings,
        partition_id: int,
        key: LocalAccount | None = None,
        data: ClientData | None = None,
        gateway: str | None = None,
    ) -> None:
        """Load the client's data and strategy.

        A simulated client (the defaults) takes its configured key, partition ``partition_id``
        of ``settings.num_clients`` and the run's gateway, and attacks if the run says so. A
        live node (``fedledger node join``) brings its own ``key``, ``data`` and ``gateway``
        address and never attacks.
        """
        torch.set_num_threads(1)  # determinism, and two actors share two cores
        self.settings = settings
        self.partition_id = partition_id
        self.gateway_address = gateway or settings.gateway
        self.key = key or node_key(settings.keys, partition_id)
        self.task = get_task(settings.task)
        self.plugin = get_strategy(settings.strategy, settings.strategy_options)
        simulated = data is None
        self.attack: Attack | None = (
            parse_attack(settings.attack)
            if simulated and partition_id in settings.attacker_ids() and settings.attack
            else None
        )
        if data is None:
            data = self.task.client_data(partition_id, settings.num_clients, settings.partition, settings.seed)
        self.data = self.attack.poison_data(data, self.task.num_classes) if self.attack else data

    @property
    def address(self) -> str:
        """The client's on-chain address."""
        return str(self.key.address)

    @property
    def gateway(self) -> GatewayClient:
        """The (process-wide) gateway client."""
        return _gateway(self.gateway_address)

    # ----------------------------------------------------------------- joining

    def join(self, node_id: int, challenge: bytes) -> tuple[bytes, bytes]:
        """Sign the coordinator's challenge; also sign a register transaction if not registered yet.

        Returns (binding signature, raw register transaction or b"").
        """
        binding = td.sign_action(
            self.key,
            td.NODE_BINDING,
            td.node_binding_message(self.address, node_id, challenge),
            self.gateway.task().domain,
        )
        register = b""
        if not self.gateway.account(self.address).registered:
            register = self.gateway.signed_transaction(self.key, "register", value=int(self.settings.stake_wei))
        return binding.signature, register

    # ---------------------------------------------------------------- training

    def train(
        self, round_: int, state: Arrays, private: dict[str, Arrays] | None = None
    ) -> tuple[Arrays, int, dict[str, float]]:
        """Train from the global state with the strategy's client algorithm (and the attack, if any).

        Returns the update to upload (the trained model for most strategies), the number of
        training examples and the training metrics.
        """
        settings = TrainSettings(
            local_epochs=self.settings.local_epochs,
            lr=self.settings.lr,
            batch_size=self.settings.batch_size,
            seed=round_seed(self.settings.seed, round_, self.partition_id),
            round=round_,
        )
        update, metrics = self.plugin.client_update(self.task, self.settings.seed, state, self.data, settings, private)
        if self.attack is not None:
            update = self.plugin.poison(self.attack, state, update)
        return update, len(self.data.train), metrics

    def report(self, state: Arrays, private: dict[str, Arrays] | None = None) -> dict[str, float]:
        """The strategy's own evaluation on this client's local test set (e.g. personalised accuracy)."""
        return self.plugin.client_report(self.task, self.settings.seed, state, self.data, private)

    def submit(self, round_: int, arrays: Arrays, num_examples: int, *, wait: bool = False) -> pb.ActionResult:
        """Upload the canonical bytes and the signed commitment through the gateway.

        By default it does not wait for the batch: the coordinator flushes the gateway's queue
        when the phase's messages are answered (a ClientApp blocking on the batch would hold a
        simulation actor that other clients need to fill that very batch).
        """
        return self.gateway.submit_update(self.key, round_, codec.encode(arrays), num_examples, wait=wait)

    # ------------------------------------------------------------------ voting

    def decide(
        self,
        global_arrays: Arrays,
        items: list[bytes],
        weights: list[int],
        tolerance_bps: int,
        private: dict[str, Arrays] | None = None,
    ) -> Vote:
        """Score each item against the global model.

        Per-update mode: ``items`` are the proposers' update hashes (empty when a proposer
        committed nothing) and ``weights`` their committed example counts; each update is judged
        as applied with its example share. Aggregate mode: one item, the candidate, weight 0
        (judged as it is). ``private`` is the node's strategy storage (e.g. FedSTO's EMA teacher).
        """
        seed = self.settings.seed
        judge = self.plugin.judge(self.task, seed, global_arrays, self.data.val, private)
        score_global = judge(self.plugin.build(self.task, seed, global_arrays))
        threshold = (BPS - tolerance_bps) * score_global / BPS
        total = sum(w for item, w in zip(items, weights, strict=True) if item)
        bits, scores = 0, []
        for i, (item, weight) in enumerate(zip(items, weights, strict=True)):
            if not item:  # the proposer committed nothing: nothing to judge
                scores.append(None)
                continue
            try:
                arrays = codec.decode(self.gateway.fetch_blob(item))
                candidate = self.plugin.apply_update(global_arrays, arrays, weight / total) if weight else arrays
                model = self.plugin.build(self.task, seed, candidate)
            except (codec.CodecError, BlobVerificationError, ValueError) as exc:  # malformed: voted down
                log.warning("item %d of round is malformed: %s", i, exc)
                scores.append(None)
                continue
            score = judge(model)
            scores.append(score)
            if score >= threshold:
                bits |= 1 << i
        return Vote(bits, score_global, tuple(scores))

    def commit_vote(self, round_: int, bits: int, *, wait: bool = False) -> tuple[pb.ActionResult, bytes]:
        """Commit a hidden vote; returns the result and the salt to reveal it with."""
        salt = secrets.token_bytes(32)
        return self.gateway.commit_vote(self.key, round_, bits, salt, wait=wait), salt

    def reveal_vote(self, round_: int, bits: int, salt: bytes, *, wait: bool = False) -> pb.ActionResult:
        """Reveal the committed vote."""
        return self.gateway.reveal_vote(self.key, round_, bits, salt, wait=wait)


@functools.cache
def participant(settings_json: str, partition_id: int) -> Participant:
    """A cached participant per run settings and partition (one per Ray actor process and client)."""
    return Participant(RunSettings.model_validate_json(settings_json), partition_id)


@functools.cache
def live_participant(settings_json: str, keystore: str, data: str, gateway: str) -> Participant:
    """A live node's participant: its keystore (password in ``$FEDLEDGER_KEY_PASSWORD``), data and gateway."""
    settings = RunSettings.model_validate_json(settings_json)
    spec = parse_data_spec(data)
    local = spec.load(get_task(settings.task), settings.partition, settings.seed)
    return Participant(settings, spec.partition_id, key=load_key(Path(keystore)), data=local, gateway=gateway)
