"""The run report (``report.json``), built from the ServerApp's records and the chain's events.

Schema: docs/report-schema.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, Field, computed_field

from fedledger.server.coordinator.results import ClientTraffic, RoundResult, RunSummary


class AttackersInfo(BaseModel):
    """Who attacked, and how."""

    count: int
    attack: str | None = Field(description="their update attack (null: none)")
    voter_attack: str = Field(default="honest", description="their voter attack")
    addresses: list[str]


class ChainInfo(BaseModel):
    """Where the task lived."""

    kind: str = Field(description="embedded, rpc, or none (without governance)")
    chain_id: int | None
    task: str | None


class RoundReport(BaseModel):
    """One round."""

    round: int
    accepted: bool | None = Field(description="a new global model was adopted this round (null without governance)")
    tally: list[int] | None = Field(description="per-proposer tallies (per_update) or [candidate tally] (aggregate)")
    proposers: list[str]
    rejected: list[str] = Field(description="proposers whose update was voted down")
    undecided: list[str] = Field(
        default_factory=list, description="proposers whose update had no quorum of informed reviewers (left out)"
    )
    accepted_proposers: list[str] = Field(
        default_factory=list, description="proposers whose update was voted in (aggregate: all of an adopted candidate)"
    )
    attackers_accepted: list[str] = Field(default_factory=list, description="attackers among ``accepted_proposers``")
    attackers_rejected: list[str] = Field(default_factory=list, description="attackers among ``rejected``")
    voters: list[str]
    reviewers: int = Field(default=0, description="reviewers per update in effect (0 in reports before FLTask v2)")
    evaluations: int = Field(default=0, description="items the voters were sent to judge this round")
    metrics: dict[str, float]
    gas_used: int
    bytes_up: int = Field(description="clients' Flower replies and gateway requests, summed (measured)")
    bytes_down: int = Field(description="clients' Flower messages and gateway responses, summed (measured)")
    traffic: dict[str, ClientTraffic] = Field(default_factory=dict, description="per client address")
    coordinator_gateway_bytes: int = 0
    wall_s: float

    def client_bytes(self) -> list[int]:
        """Bytes (both directions) of each client that took part in the round."""
        return [t.total for t in self.traffic.values()]


class ParticipantReport(BaseModel):
    """One participant's money."""

    address: str
    honest: bool
    stake_start_wei: int
    stake_end_wei: int
    rewarded_wei: int
    slashed_wei: int

    @computed_field(description="stake change plus rewards credited")  # type: ignore[prop-decorator]
    @property
    def net_wei(self) -> int:
        """What taking part earned: stake change plus rewards credited."""
        return self.stake_end_wei - self.stake_start_wei + self.rewarded_wei


class Outcome(BaseModel):
    """Did the votes tell attackers from honest participants, and who gained (governed runs)."""

    from_round: int = Field(
        description="updates of this round and later count (round 1 starts from an untrained model)"
    )
    attacker_updates: int = Field(description="attacker updates judged")
    attacker_rejected: int
    recall: float | None = Field(description="attacker updates rejected / judged (null: none judged)")
    honest_updates: int = Field(description="honest updates judged")
    honest_rejected: int
    false_rejection: float | None = Field(description="honest updates rejected / judged")
    attacker_undecided: int = Field(
        default=0, description="attacker updates left without a verdict (kept out, neither paid nor slashed)"
    )
    honest_undecided: int = Field(default=0, description="honest updates left without a verdict")
    attacker_net_wei: int = Field(description="sum over attackers of stake change + rewards")
    attacker_net_max_wei: int | None = Field(description="the best-off attacker's net (null: no attackers)")
    honest_net_mean_wei: int | None = Field(description="mean over honest participants of their net")


class Report(BaseModel):
    """Everything a run produced."""

    strategy: str
    task: str = Field(default="", description="the task the run trained ('' in reports written before it was recorded)")
    governance: bool
    seed: int
    clients: int
    attackers: AttackersInfo
    chain: ChainInfo
    vote_mode: str | None
    vote_rule: str | None = Field(default=None, description="how voters judged updates (null without governance)")
    rounds: list[RoundReport]
    initial: dict[str, float]
    final: dict[str, float]
    participants: list[ParticipantReport]
    outcome: Outcome | None = Field(default=None, description="detection and money summary (governed runs)")
    wall_s: float

    def save(self, path: Path) -> None:
        """Write as indented JSON (atomically)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def build_report(
    summary: RunSummary,
    rounds: list[RoundResult],
    attackers: AttackersInfo,
    chain: ChainInfo,
    money: dict[str, tuple[int, int, int, int]],
    wall_s: float,
    vote_rule: str | None = None,
) -> Report:
    """Assemble the report; ``money`` maps address -> (stake start, stake end, rewarded, slashed)."""
    attacker_set = set(attackers.addresses)
    participants = []
    for address in sorted(summary.partitions, key=lambda a: summary.partitions[a]):
        start, end, rewarded, slashed = money.get(address, (0, 0, 0, 0))
        participants.append(
            ParticipantReport(
                address=address,
                honest=address not in attacker_set,
                stake_start_wei=start,
                stake_end_wei=end,
                rewarded_wei=rewarded,
                slashed_wei=slashed,
            )
        )
    round_reports = [
        RoundReport(
            **r.model_dump(exclude={"dropped", "stakes", "credited"}),
            attackers_accepted=[a for a in r.accepted_proposers if a in attacker_set],
            attackers_rejected=[a for a in r.rejected if a in attacker_set],
        )
        for r in rounds
    ]
    return Report(
        strategy=summary.strategy,
        task=summary.task,
        governance=summary.governance,
        seed=summary.seed,
        clients=summary.clients,
        attackers=attackers,
        chain=chain,
        vote_mode=summary.vote_mode,
        vote_rule=vote_rule if summary.governance else None,
        rounds=round_reports,
        initial=summary.initial_metrics,
        final=summary.final_metrics,
        participants=participants,
        outcome=(
            outcome(
                [(r.round, r.accepted_proposers, r.rejected, r.undecided) for r in round_reports],
                {p.address: p.net_wei for p in participants},
                attacker_set,
            )
            if summary.governance
            else None
        ),
        wall_s=round(wall_s, 3),
    )


def outcome(
    rounds: Iterable[tuple[int, list[str], list[str], list[str]]],
    nets: dict[str, int],
    attackers: set[str],
    from_round: int = 2,
) -> Outcome:
    """Detection recall and false rejections from ``from_round``, and the nets of both groups.

    ``rounds``: (round, accepted, rejected and undecided proposers); ``nets``: participant -> net wei.
    Recall and false rejections count decided updates; undecided ones are counted apart.
    """
    rounds = [r for r in rounds if r[0] >= from_round]
    judged = [(a, a in rejected) for _, accepted, rejected, _ in rounds for a in accepted + rejected]
    left = [a for *_, undecided in rounds for a in undecided]
    attacker = [bad for a, bad in judged if a in attackers]
    honest = [bad for a, bad in judged if a not in attackers]
    attacker_nets = [net for a, net in nets.items() if a in attackers]
    honest_nets = [net for a, net in nets.items() if a not in attackers]
    return Outcome(
        from_round=from_round,
        attacker_updates=len(attacker),
        attacker_rejected=sum(attacker),
        recall=sum(attacker) / len(attacker) if attacker else None,
        honest_updates=len(honest),
        honest_rejected=sum(honest),
        false_rejection=sum(honest) / len(honest) if honest else None,
        attacker_net_wei=sum(attacker_nets),
        attacker_net_max_wei=max(attacker_nets) if attacker_nets else None,
        honest_net_mean_wei=sum(honest_nets) // len(honest_nets) if honest_nets else None,
        attacker_undecided=sum(1 for a in left if a in attackers),
        honest_undecided=sum(1 for a in left if a not in attackers),
    )
