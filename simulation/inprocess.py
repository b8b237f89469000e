"""A federation in one process: the real client and server algorithms without processes, gateway or chain.

``fedledger simulate`` runs every part as the product does (a gateway with a chain, a Flower
SuperLink, Ray actors): 30 s and more per run. The robustness study (bench/robustness.py) needs
hundreds of runs, so it plays them here, with the same pieces:

- clients are :class:`~fedledger.client.participant.Participant` objects: the same training,
  attacks (simulation/attacks.py), vote rules (client/voting.py) and voter attacks;
- the coordinator aggregates with the strategy plug-in (Flower's strategies), in proposer
  address order as :class:`~fedledger.server.coordinator.governed.GovernedStrategy` does;
- the contract is replaced by its Python reference implementations, which the contract tests
  hold it to: the sortition (contracts/sortition.py) and the settlement (contracts/settlement.py),
  over stakes, balances and the reward pool kept here as the contract keeps them.

What differs from a chain: the sortition seed is derived from the run seed and round (a chain
mixes in prevrandao), there are no deadlines (a silent node simply never acts) and no gas.
Without governance (``defence`` fedavg, krum, median, trimmed_mean) a round samples
``proposer_share`` of the clients, as Flower's strategies do, and aggregates their replies.
Governed defences: ``governed`` (per-update voting), ``governed_stake`` (the same, votes weighed
by stake) and ``governed_aggregate`` (the paper's vote on the aggregated candidate).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedledger.aggregation.base import quiet_flower
from fedledger.aggregation.registry import get_strategy
from fedledger.config import DEFAULT_POOL_WEI, RunSettings
from fedledger.contracts import sortition
from fedledger.contracts.settlement import ProposerSeat, RoundInput, VoterSeat, settle
from fedledger.contracts.types import BPS, EJECT_STANDING, TaskConfig, VoteMode, decode_vote, default_quorum

from .attacks import AttackSpec, VoterAttackSpec, choose_attackers
from .partition import PartitionSpec
from .report import Outcome, ParticipantReport, outcome
from .tasks import get_task
from .tasks.base import derived_seed

Arrays = OrderedDict[str, np.ndarray]
PLAIN_DEFENCES = ("fedavg", "krum", "median", "trimmed_mean")
GOVERNED_DEFENCES = ("governed", "governed_stake", "governed_aggregate")
DEFENCES = PLAIN_DEFENCES + GOVERNED_DEFENCES
_TASK_DEFAULTS = TaskConfig.model_fields


def _default(name: str) -> int:
    return int(_TASK_DEFAULTS[name].default)


class Incentives(BaseModel):
    """The money side of a governed run; defaults: the task defaults (contracts/types.py) and RunSettings'."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slash_rate_bps: int = Field(default_factory=lambda: _default("slash_rate_bps"), ge=0, le=BPS)
    voter_reward_bps: int = Field(default_factory=lambda: _default("voter_reward_bps"), ge=0, le=BPS)
    min_stake_wei: int = Field(default_factory=lambda: _default("min_stake"), ge=1)
    stake_wei: int = Field(default_factory=lambda: int(RunSettings.model_fields["stake_wei"].default), ge=1)
    pool_wei: int = Field(default=DEFAULT_POOL_WEI, ge=0)
    proposer_share_bps: int = Field(default_factory=lambda: _default("proposer_share_bps"), ge=1, lt=BPS)
    vote_tolerance_bps: int = Field(default_factory=lambda: _default("vote_tolerance_bps"), ge=0, lt=BPS)
    stake_weighted: bool = False
    reviewers_per_update: int = Field(
        default_factory=lambda: _default("reviewers_per_update"),
        ge=0,
        description="k: voters assigned to each update (0: every voter judges every update)",
    )
    quorum: int | None = Field(
        default=None, ge=1, description="informed votes for a verdict (None: the task default for the committee)"
    )
    canary_rate_bps: int = Field(
        default_factory=lambda: _default("canary_rate_bps"), ge=0, le=BPS, description="chance a proposal owes a canary"
    )


class Scenario(BaseModel):
    """One run: the task, the attack and the defence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = "digits"
    strategy: str = "fedavg"
    clients: int = Field(default=10, ge=2, le=127)
    rounds: int = Field(default=6, ge=1)
    partition: PartitionSpec = "iid"
    attackers: int = Field(default=0, ge=0)
    attack: AttackSpec = "none"
    voter_attack: VoterAttackSpec = "honest"
    defence: str = "governed"
    vote_rule: str = "reference"
    seed: int = Field(default=0, ge=0)
    local_epochs: int = Field(default=5, ge=1)
    lr: float = Field(default=0.1, gt=0)
    incentives: Incentives = Field(default_factory=Incentives)

    @field_validator("defence")
    @classmethod
    def _defence(cls, value: str) -> str:
        if value not in DEFENCES:
            raise ValueError(f"unknown defence {value!r}; use one of {', '.join(DEFENCES)}")
        return value

    @model_validator(mode="after")
    def _attackers(self) -> Scenario:
        if self.attackers >= self.clients:
            raise ValueError(f"attackers must be fewer than the {self.clients} clients")
        return self

    @property
    def governed(self) -> bool:
        """Whether the contract's votes decide (else plain Flower aggregation)."""
        return self.defence in GOVERNED_DEFENCES

    def settings(self, attacker_ids: list[int]) -> RunSettings:
        """The run settings its clients see (as ``fedledger simulate`` would give them)."""
        return RunSettings(
            task=self.task,
            strategy=self.strategy if self.governed else self.defence,
            num_clients=self.clients,
            rounds=self.rounds,
            seed=self.seed,
            partition=self.partition,
            attackers=",".join(map(str, attacker_ids)),
            attack=self.attack if attacker_ids else "",
            voter_attack=self.voter_attack if attacker_ids else "honest",
            governance=self.governed,
            local_epochs=self.local_epochs,
            lr=self.lr,
            stake_wei=str(self.incentives.stake_wei),
        )


class RoundOutcome(BaseModel):
    """One round as the study sees it."""

    round: int
    accuracy: float
    proposers: list[str]
    voters: list[str] = []
    accepted: list[str] = Field(default_factory=list, description="proposers whose update entered the model")
    rejected: list[str] = Field(default_factory=list, description="proposers whose update was voted down")
    undecided: list[str] = Field(
        default_factory=list, description="proposers whose update had no quorum of informed reviewers (left out)"
    )
    ejected: list[str] = Field(default_factory=list, description="members this round made ineligible")
    canaries: list[str] = Field(
        default_factory=list, description="proposers that committed and declared a canary (in no other list)"
    )
    missing: list[str] = Field(default_factory=list, description="proposers that sent nothing")
    objections: dict[str, list[str]] = Field(
        default_factory=dict, description="per rejected proposer, the rule's reasons of the voters who rejected it"
    )
    attacker_voters: int = 0
    attacker_voter_stake_bps: int = Field(default=0, description="attackers' share of the voters' stake, bps")
    adopted: bool = True
    evaluations: int = Field(default=0, description="items the voters judged this round (P x V, or P x k)")


class Money(ParticipantReport):
    """One participant's money over the run (wei), as report.json gives it, and how often it proposed."""

    proposed: int = Field(description="rounds in which it was drawn as a proposer")


class RunResult(BaseModel):
    """What one in-process run produced."""

    scenario: Scenario
    attackers: list[str]
    initial_accuracy: float
    rounds: list[RoundOutcome]
    money: list[Money] = []
    wall_s: float

    @property
    def accuracy(self) -> float:
        """Test accuracy of the final global model."""
        return self.rounds[-1].accuracy if self.rounds else self.initial_accuracy

    def outcome(self, from_round: int = 2) -> Outcome:
        """Detection and money as ``report.json`` summarises them (governed runs)."""
        return outcome(
            [(r.round, r.accepted, r.rejected, r.undecided) for r in self.rounds],
            {m.address: m.net_wei for m in self.money},
            set(self.attackers),
            from_round,
        )


@dataclass
class _Member:
    stake: int
    rewarded: int = 0
    slashed: int = 0
    proposed: int = 0
    standing: int = 0


@dataclass
class _Ledger:
    """The contract's money state: members in registration order, stakes, credits and the pool."""

    incentives: Incentives
    members: dict[str, _Member] = field(default_factory=dict)
    pool: int = 0

    def eligible(self) -> list[int]:
        """Member indices the next draw may pick: registration order, as the contract assigns them."""
        return [
            i
            for i, m in enumerate(self.members.values())
            if m.stake >= self.incentives.min_stake_wei and m.standing < EJECT_STANDING
        ]


class InProcessRun:
    """Plays one :class:`Scenario`; :meth:`run` returns its :class:`RunResult`."""

    def __init__(self, scenario: Scenario, committees: list[tuple[list[str], list[str]]] | None = None) -> None:
        """Prepare the clients (their data and strategy) of ``scenario``.

        ``committees`` replays given (proposers, voters) per round instead of drawing them (e.g. the
        draws of a ``fedledger simulate`` run, to compare the two).
        """
        from fedledger.client.participant import Participant

        self.scenario = scenario
        self.attacker_ids = choose_attackers(scenario.clients, scenario.attackers, scenario.seed)
        self.settings = self.scenario.settings(self.attacker_ids)
        self.task = get_task(scenario.task)
        self.plugin = get_strategy(self.settings.strategy)
        self.clients = [Participant(self.settings, pid) for pid in range(scenario.clients)]
        self.by_address = {c.address: c for c in self.clients}
        self.attackers = [self.clients[pid].address for pid in self.attacker_ids]
        self.test = self.task.test_data(scenario.seed)
        self.committees = committees

    def accuracy(self, state: Arrays) -> float:
        """Test accuracy of a global state on the server's test set."""
        return float(self.task.evaluate(self.plugin.build(self.task, self.scenario.seed, state), self.test)["accuracy"])

    def run(self) -> RunResult:
        """All rounds; the result with accuracy per round and, governed, everyone's money."""
        started = time.monotonic()
        state = self.plugin.initial_state(self.task, self.scenario.seed)
        initial = self.accuracy(state)
        if self.scenario.governed:
            rounds, money = self._governed(state)
        else:
            rounds, money = self._plain(state), []
        return RunResult(
            scenario=self.scenario,
            attackers=self.attackers,
            initial_accuracy=initial,
            rounds=rounds,
            money=money,
            wall_s=round(time.monotonic() - started, 3),
        )

    # ------------------------------------------------------------------ plain

    def _plain(self, state: Arrays) -> list[RoundOutcome]:
        strategy = self.plugin.server_strategy()
        rng = np.random.default_rng(derived_seed("sample", self.scenario.seed))
        share = self.scenario.incentives.proposer_share_bps / BPS
        count = max(1, round(share * self.scenario.clients))
        outcomes = []
        for r in range(1, self.scenario.rounds + 1):
            sampled = sorted(int(i) for i in rng.choice(self.scenario.clients, size=count, replace=False))
            replies = []
            for pid in sampled:
                client = self.clients[pid]
                if client.silent:
                    continue
                update, examples, _ = client.train(r, state, {})
                replies.append((update, examples))
            if replies:
                with quiet_flower():
                    state = state | self.plugin.aggregate(strategy, r, state, replies)
            addresses = [self.clients[pid].address for pid in sampled]
            outcomes.append(RoundOutcome(round=r, accuracy=self.accuracy(state), proposers=addresses))
        return outcomes

    # --------------------------------------------------------------- governed

    def _governed(self, state: Arrays) -> tuple[list[RoundOutcome], list[Money]]:
        incentives = self.scenario.incentives
        if self.scenario.defence == "governed_stake":
            incentives = incentives.model_copy(update={"stake_weighted": True})
        ledger = _Ledger(incentives, pool=incentives.pool_wei)
        for client in self.clients:  # everyone registers with the same stake, in partition order
            ledger.members[client.address] = _Member(stake=incentives.stake_wei)
        mode = self.vote_mode
        strategy = self.plugin.server_strategy()
        outcomes = []
        for r in range(1, self.scenario.rounds + 1):
            eligible = ledger.eligible()
            if len(eligible) < 2:
                break  # the contract refuses to open a round (NotEnoughParticipants)
            if self.committees is not None:
                if r > len(self.committees):
                    break
                proposers, voters = self.committees[r - 1]
            else:
                seed = sortition.round_seed(
                    derived_seed("prevrandao", self.scenario.seed, r), r, b"\0" * 32, "0x" + "0" * 40
                )
                drawn, num_proposers = sortition.draw_committee(
                    eligible, seed, self.scenario.clients, incentives.proposer_share_bps
                )
                addresses = list(ledger.members)
                proposers = [addresses[i] for i in drawn[:num_proposers]]
                voters = [addresses[i] for i in drawn[num_proposers:]]
            state, outcome = self._round(r, state, proposers, voters, mode, ledger, strategy)
            outcomes.append(outcome)
        money = []
        for c in self.clients:
            member = ledger.members[c.address]
            money.append(
                Money(
                    address=c.address,
                    honest=c.address not in self.attackers,
                    stake_start_wei=incentives.stake_wei,
                    stake_end_wei=member.stake,
                    rewarded_wei=member.rewarded,
                    slashed_wei=member.slashed,
                    proposed=member.proposed,
                )
            )
        return outcomes, money

    def _round(
        self,
        r: int,
        state: Arrays,
        proposers: list[str],
        voters: list[str],
        mode: VoteMode,
        ledger: _Ledger,
        strategy: object,
    ) -> tuple[Arrays, RoundOutcome]:
        incentives = ledger.incentives
        updates: dict[str, tuple[Arrays, int]] = {}
        canaries: set[str] = set()
        rate = incentives.canary_rate_bps if mode is VoteMode.PER_UPDATE else 0
        global_hash = derived_seed("global", self.scenario.seed, r).to_bytes(32, "big")  # a chain's: keccak of it
        for address in proposers:
            ledger.members[address].proposed += 1
            client = self.by_address[address]
            if client.silent:
                continue
            preimage = client.owed_canary(r, global_hash, rate)
            if preimage is not None:  # declared once its reviewers committed (no race in one process)
                updates[address] = client.canary(state, preimage)
                client.canaries.declared()
                canaries.add(address)
                continue
            update, examples, _ = client.train(r, state, {})
            updates[address] = (update, examples)

        candidate: Arrays | None = None
        if mode is VoteMode.AGGREGATE:
            if updates:
                candidate = self._aggregate(strategy, r, state, updates)
            items = [candidate] if candidate is not None else [None]
            weights = [0]
        else:
            items = [updates[a][0] if a in updates else None for a in proposers]
            weights = [updates[a][1] if a in updates else 0 for a in proposers]
        anything = any(item is not None for item in items)
        aggregate = mode is VoteMode.AGGREGATE
        k = sortition.effective_reviewers(incentives.reviewers_per_update, len(proposers), len(voters))
        assigned = sortition.assignment(len(proposers), len(voters), k, aggregate)

        attackers = set(self.attackers)
        seats = []
        objections: dict[str, list[str]] = {}
        evaluations = 0
        for j, address in enumerate(voters):
            client = self.by_address[address]
            if client.silent or not anything:
                member = ledger.members[address]
                seats.append(VoterSeat(address, member.stake, committed=False, standing=member.standing))
                continue
            mine = assigned[j]  # its items in the bit order of its vote
            own = [items[i] for i in mine]
            committed = sum(1 << a for a, item in enumerate(own) if item is not None)
            evaluations += sum(1 for item in own if item is not None)
            vote = client.vote(
                r,
                state,
                own,
                [weights[i] for i in mine],
                committed,
                client.fellow_items(proposers if aggregate else [proposers[i] for i in mine], aggregate),
                rule=self.scenario.vote_rule,
                tolerance_bps=incentives.vote_tolerance_bps,
                aggregate=aggregate,
            )
            member = ledger.members[address]
            seats.append(
                VoterSeat(
                    address,
                    member.stake,
                    committed=True,
                    revealed=vote.reveal,
                    bits=vote.bits,
                    standing=member.standing,
                )
            )
            accepts, abstains = decode_vote(vote.bits)
            for a, reason in enumerate(vote.reasons):
                if committed >> a & 1 and not accepts >> a & 1 and not abstains >> a & 1:
                    proposer = "candidate" if aggregate else proposers[mine[a]]
                    objections.setdefault(proposer, []).append(reason or f"voter attack {client.voter_attack}")
        settlement = settle(
            RoundInput(
                vote_mode=mode,
                stake_weighted=incentives.stake_weighted,
                slash_rate_bps=incentives.slash_rate_bps,
                total_rounds=self.scenario.rounds,
                round=r,
                reward_pool=ledger.pool,
                voter_reward_bps=incentives.voter_reward_bps,
                proposers=[
                    ProposerSeat(a, ledger.members[a].stake, a in updates, ledger.members[a].standing, a in canaries)
                    for a in proposers
                ],
                voters=seats,
                has_candidate=candidate is not None,
                items=assigned,
                quorum=incentives.quorum or default_quorum(self.scenario.clients, incentives.reviewers_per_update),
                min_stake=incentives.min_stake_wei,
            )
        )
        for address, standing in settlement.standings.items():
            ledger.members[address].standing = standing
        for address, amount in settlement.rewards.items():
            ledger.members[address].rewarded += amount
        for address, (amount, _reason) in settlement.slashes.items():
            ledger.members[address].stake -= amount
            ledger.members[address].slashed += amount
        ledger.pool = ledger.pool - settlement.paid + settlement.slashed

        if mode is VoteMode.AGGREGATE:
            adopted = candidate is not None and bool(settlement.outcomes & 1)
            undecided = sorted(updates) if candidate is not None and not settlement.decided & 1 else []
            accepted = sorted(updates) if adopted else []
            rejected = [] if adopted or undecided else sorted(updates) if candidate is not None else []
            if adopted and candidate is not None:
                state = candidate
        else:
            judged = [a for a in proposers if a in updates and a not in canaries]
            accepted = [a for i, a in enumerate(proposers) if a in judged and settlement.outcomes >> i & 1]
            undecided = [a for i, a in enumerate(proposers) if a in judged and not settlement.decided >> i & 1]
            rejected = [a for a in judged if a not in accepted and a not in undecided]
            adopted = bool(accepted)
            if adopted:
                state = self._aggregate(strategy, r, state, {a: updates[a] for a in accepted})
        voter_stake = sum(s.stake for s in seats) or 1
        outcome = RoundOutcome(
            round=r,
            accuracy=self.accuracy(state),
            proposers=proposers,
            voters=voters,
            accepted=accepted,
            rejected=rejected,
            undecided=undecided,
            ejected=settlement.ejected,
            canaries=sorted(canaries),
            missing=[a for a in proposers if a not in updates],
            objections={a: objections.get(a, []) for a in rejected},
            attacker_voters=sum(1 for a in voters if a in attackers),
            attacker_voter_stake_bps=sum(s.stake for s in seats if s.address in attackers) * BPS // voter_stake,
            adopted=adopted,
            evaluations=evaluations,
        )
        return state, outcome

    @property
    def vote_mode(self) -> VoteMode:
        """What the governed defence votes on: the aggregate (``governed_aggregate``) or each update."""
        return VoteMode.AGGREGATE if self.scenario.defence == "governed_aggregate" else VoteMode.PER_UPDATE

    def _aggregate(self, strategy: object, r: int, state: Arrays, updates: dict[str, tuple[Arrays, int]]) -> Arrays:
        ordered = [updates[a] for a in sorted(updates)]
        with quiet_flower():
            aggregated = state | self.plugin.governed_aggregate(
                strategy,  # type: ignore[arg-type]
                r,
                state,
                ordered,
                per_update=self.vote_mode is VoteMode.PER_UPDATE,
            )
        return self.plugin.server_update(self.task, self.scenario.seed, r, aggregated)


def play(scenario: Scenario) -> RunResult:
    """Run ``scenario`` in this process."""
    return InProcessRun(scenario).run()
