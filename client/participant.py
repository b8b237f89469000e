"""What one client does in a governed round, apart from Flower's message plumbing.

It trains with its strategy's client algorithm (poisoned when it is a simulated attacker),
submits the update through the gateway, and votes by the task's vote rule (client/voting.py)
with commit-reveal through the gateway. A simulated attacker turns its honest judgement into
the bits it commits by its voter attack (simulation/attacks.py).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass

import grpc
import numpy as np
import torch
from eth_account.signers.local import LocalAccount

from fedledger import codec
from fedledger.aggregation.registry import get_strategy
from fedledger.config import RunSettings
from fedledger.contracts import typed_data as td
from fedledger.contracts.canary import CanaryChain
from fedledger.server.gateway.client import BlobVerificationError, GatewayClient, read_ca
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.simulation.attacks import Attack, PoisonContext, VoterAttack, parse_attack, parse_voter_attack
from fedledger.simulation.tasks import TrainSettings, get_task
from fedledger.simulation.tasks.base import ClientData, derived_seed

from .agent import AgentAccount
from .canary import canary_chain, canary_update
from .data import parse_data_spec
from .identity import node_key
from .voting import Ballot, Judgement, get_rule

Arrays = OrderedDict[str, np.ndarray]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vote:
    """A voter's decision on the items of a round.

    ``bits`` is what it commits; ``honest_bits`` its rule's judgement (they differ for a voter
    attack); ``scores`` and ``reasons`` come from the rule, per item.
    """

    bits: int
    score_global: float
    scores: tuple[float | None, ...]
    honest_bits: int = 0
    reasons: tuple[str, ...] = ()
    reveal: bool = True


@functools.cache
def _gateway(address: str, ca: str = "") -> GatewayClient:
    return GatewayClient(address, root_certificates=read_ca(ca), timeout=300, reconnect=True)


def round_seed(seed: int, round_: int, partition_id: int) -> int:
    """A training seed that differs per run seed, round and client, identically in every process."""
    return derived_seed(seed, round_, partition_id)


def train_settings(settings: RunSettings, round_: int, partition_id: int) -> TrainSettings:
    """The local training hyper-parameters of client ``partition_id`` in ``round_``."""
    return TrainSettings(
        local_epochs=settings.local_epochs,
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=round_seed(settings.seed, round_, partition_id),
        round=round_,
    )


@functools.lru_cache(maxsize=4)
def _attacker_updates(settings_json: str, round_: int, state_blob: bytes) -> tuple[Arrays, ...]:
    """The honest updates every attacker of a simulated run would send this round (ALIE's estimate).

    Every attacker computes the same list from the same public inputs (its fellow attackers'
    data partitions, the round's seeds), so all of them send the same vector, as in the paper.
    """
    settings = RunSettings.model_validate_json(settings_json)
    task = get_task(settings.task)
    plugin = get_strategy(settings.strategy, settings.strategy_options)
    state = codec.decode(state_blob)
    updates = []
    for pid in sorted(settings.attacker_ids()):
        data = task.client_data(pid, settings.num_clients, settings.partition, settings.seed)
        update, _ = plugin.client_update(task, settings.seed, state, data, train_settings(settings, round_, pid), {})
        updates.append(update)
    return tuple(updates)


class Participant:
    """One simulated (or live) client."""

    def __init__(
        self,
        settings: RunSettings,
        partition_id: int,
        key: LocalAccount | None = None,
        data: ClientData | None = None,
        gateway: str | None = None,
        gateway_ca: str = "",
    ) -> None:
        """Load the client's data and strategy.

        A simulated client (the defaults) takes its configured key, partition ``partition_id``
        of ``settings.num_clients`` and the run's gateway, and attacks if the run says so. A
        live node (``fedledger node join``) brings its own ``key``, ``data`` and ``gateway``
        address (over TLS checked with the CA file ``gateway_ca``) and never attacks.
        """
        torch.set_num_threads(1)  # determinism, and two actors share two cores
        self.settings = settings
        self.partition_id = partition_id
        self.gateway_address = gateway or settings.gateway
        self.gateway_ca = gateway_ca if gateway else settings.gateway_ca
        self.key = key or node_key(settings.keys, partition_id)
        self.task = get_task(settings.task)
        self.plugin = get_strategy(settings.strategy, settings.strategy_options)
        simulated = data is None
        attacker = simulated and partition_id in settings.attacker_ids()
        self.attack: Attack | None = parse_attack(settings.attack) if attacker and settings.attack else None
        self.voter_attack: VoterAttack = parse_voter_attack(settings.voter_attack if attacker else "honest")
        if data is None:
            data = self.task.client_data(partition_id, settings.num_clients, settings.partition, settings.seed)
        self.clean_data = data
        """What the client really holds: it judges with it, whatever it trains on."""
        self.data = self.attack.poison_data(data, self.task.num_classes) if self.attack else data

    @property
    def address(self) -> str:
        """The client's on-chain address."""
        return str(self.key.address)

    @property
    def gateway(self) -> GatewayClient:
        """The (process-wide) gateway client."""
        return _gateway(self.gateway_address, self.gateway_ca)

    @property
    def silent(self) -> bool:
        """A simulated silent node: it never answers."""
        return self.attack is not None and self.attack.silent

    @functools.cached_property
    def fellow_attackers(self) -> frozenset[str]:
        """The addresses of the run's attackers, known to a simulated attacker (empty for anyone else)."""
        if self.attack is None and self.voter_attack.kind == "honest":
            return frozenset()
        return frozenset(str(node_key(self.settings.keys, pid).address) for pid in self.settings.attacker_ids())

    def fellow_items(self, proposers: list[str], aggregate: bool) -> int:
        """Bitmap of the round's items from fellow attackers (aggregate mode: the candidate if one proposed)."""
        fellows = self.fellow_attackers
        if aggregate:
            return 1 if fellows & set(proposers) else 0
        return sum(1 << i for i, p in enumerate(proposers) if p in fellows)

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

    @functools.cached_property
    def canaries(self) -> CanaryChain:
        """The member's canary chain (contracts/canary.py); a simulated run's task sits at the zero address."""
        return canary_chain(self.key, "0x" + "0" * 40)

    def owed_canary(self, round_: int, global_hash: bytes, rate_bps: int) -> bytes | None:
        """The preimage to declare when this member owes a canary in ``round_`` (None otherwise).

        A simulated attacker sends its attack instead: it has no reason to let its item be known
        as harmless before the votes.
        """
        if self.attack is not None:
            return None
        return self.canaries.owes(global_hash, round_, rate_bps)

    def canary(self, state: Arrays, preimage: bytes) -> tuple[Arrays, int]:
        """The canary this member commits in place of its update, and the example count it claims as usual."""
        return canary_update(state, preimage), len(self.data.train)

    def honest_update(
        self, round_: int, state: Arrays, private: dict[str, Arrays] | None = None
    ) -> tuple[Arrays, dict[str, float]]:
        """What this client uploads when it trains honestly on its real data in ``round_``."""
        settings = train_settings(self.settings, round_, self.partition_id)
        return self.plugin.client_update(self.task, self.settings.seed, state, self.clean_data, settings, private)

    def train(
        self, round_: int, state: Arrays, private: dict[str, Arrays] | None = None
    ) -> tuple[Arrays, int, dict[str, float]]:
        """Train from the global state with the strategy's client algorithm (and the attack, if any).

        Returns the update to upload (the trained model for most strategies), the number of
        training examples and the training metrics.
        """
        settings = train_settings(self.settings, round_, self.partition_id)
        update, metrics = self.plugin.client_update(self.task, self.settings.seed, state, self.data, settings, private)
        if self.attack is not None:
            update = self.plugin.poison(self.attack, state, update, self._poison_context(round_, state))
        return update, len(self.data.train), metrics

    def _poison_context(self, round_: int, state: Arrays) -> PoisonContext:
        def attacker_updates() -> list[Arrays]:  # only ALIE asks, so only ALIE encodes the state
            return list(_attacker_updates(self.settings.model_dump_json(), round_, codec.encode(state)))

        return PoisonContext(
            rng=np.random.default_rng(derived_seed("poison", self.settings.seed, round_, self.partition_id)),
            attacker_updates=attacker_updates,
            num_clients=self.settings.num_clients,
            num_attackers=len(self.settings.attacker_ids()),
        )

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

    def judge(
        self,
        round_: int,
        global_arrays: Arrays,
        updates: list[Arrays | None],
        weights: list[int],
        *,
        rule: str,
        tolerance_bps: int,
        aggregate: bool = False,
        private: dict[str, Arrays] | None = None,
    ) -> Judgement:
        """The honest judgement of the round's items by the task's vote ``rule``, on the client's real data."""
        seed = self.settings.seed
        ballot = Ballot(
            plugin=self.plugin,
            task=self.task,
            seed=seed,
            global_arrays=global_arrays,
            updates=updates,
            weights=weights,
            val=self.clean_data.val,
            tolerance_bps=tolerance_bps,
            judge=self.plugin.judge(self.task, seed, global_arrays, self.clean_data.val, private),
            reference=lambda: self.honest_update(round_, global_arrays, dict(private or {}))[0],
            aggregate=aggregate,
        )
        return get_rule(rule).decide(ballot)

    def vote(
        self,
        round_: int,
        global_arrays: Arrays,
        updates: list[Arrays | None],
        weights: list[int],
        committed: int,
        attacker_items: int = 0,
        **judging: object,
    ) -> Vote:
        """Judge, then apply the client's voter attack: the bits it will commit.

        ``committed`` is the bitmap of items on chain (an undecodable one is judged a reject);
        ``attacker_items`` those of fellow attackers (used by colluders only).
        """
        judgement = self.judge(round_, global_arrays, updates, weights, **judging)  # type: ignore[arg-type]
        rng = np.random.default_rng(derived_seed("vote", self.settings.seed, round_, self.partition_id))
        bits = self.voter_attack.bits(judgement.bits, committed, attacker_items, rng)
        return Vote(
            bits=bits,
            score_global=judgement.score_global,
            scores=tuple(judgement.scores),
            honest_bits=judgement.bits,
            reasons=tuple(judgement.reasons),
            reveal=self.voter_attack.reveals,
        )

    def decide(
        self,
        round_: int,
        global_arrays: Arrays,
        items: list[bytes],
        weights: list[int],
        *,
        rule: str,
        tolerance_bps: int,
        aggregate: bool = False,
        proposers: list[str] | None = None,
        private: dict[str, Arrays] | None = None,
    ) -> Vote:
        """Fetch the round's items from the blob store and vote on them.

        Per-update mode: ``items`` are the proposers' update hashes (empty when a proposer
        committed nothing) and ``weights`` their committed example counts. Aggregate mode: one
        item, the candidate, weight 0 (judged as it is). ``proposers`` are the items' proposers
        (a colluding attacker accepts its fellows'). ``private`` is the node's strategy storage
        (e.g. FedSTO's EMA teacher).
        """
        updates: list[Arrays | None] = []
        fetched = iter(self.gateway.fetch_blobs([item for item in items if item]))
        for i, item in enumerate(items):
            if not item:
                updates.append(None)
                continue
            blob = next(fetched)
            if isinstance(blob, grpc.RpcError):
                raise blob  # the gateway did not answer: no vote rather than a wrong one
            try:
                if isinstance(blob, BlobVerificationError):
                    raise blob
                arrays = codec.decode(blob)
                self.plugin.check_update(global_arrays, arrays)
            except (codec.CodecError, BlobVerificationError, ValueError) as exc:  # malformed: voted down
                log.warning("item %d of round %d is malformed: %s", i, round_, exc)
                arrays = None
            updates.append(arrays)
        committed = sum(1 << i for i, item in enumerate(items) if item)
        return self.vote(
            round_,
            global_arrays,
            updates,
            weights,
            committed,
            self.fellow_items(proposers or [], aggregate),
            rule=rule,
            tolerance_bps=tolerance_bps,
            aggregate=aggregate,
            private=private,
        )

    def commit_vote(self, round_: int, bits: int, *, wait: bool = False) -> tuple[pb.ActionResult, bytes]:
        """Commit a hidden vote; returns the result and the salt to reveal it with."""
        salt = self.gateway.vote_salt(self.key, round_)
        return self.gateway.commit_vote(self.key, round_, bits, salt, wait=wait), salt

    def reveal_vote(self, round_: int, bits: int, salt: bytes, *, wait: bool = False) -> pb.ActionResult:
        """Reveal the committed vote."""
        return self.gateway.reveal_vote(self.key, round_, bits, salt, wait=wait)


@functools.cache
def participant(settings_json: str, partition_id: int) -> Participant:
    """A cached participant per run settings and partition (one per Ray actor process and client)."""
    return Participant(RunSettings.model_validate_json(settings_json), partition_id)


@functools.cache
def live_participant(settings_json: str, agent: str, data: str, gateway: str, gateway_ca: str = "") -> Participant:
    """A live node's participant: it signs through the node agent at socket ``agent``, with its data and gateway."""
    settings = RunSettings.model_validate_json(settings_json)
    spec = parse_data_spec(data)
    local = spec.load(get_task(settings.task), settings.partition, settings.seed)
    key = AgentAccount(agent)
    return Participant(
        settings,
        spec.partition_id,
        key=key,  # type: ignore[arg-type]  # signs like a LocalAccount
        data=local,
        gateway=gateway,
        gateway_ca=gateway_ca,
    )
