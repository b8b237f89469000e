"""The run report (``report.json``), built from the ServerApp's records and the chain's events.

Schema: docs/report-schema.md.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from fedledger.server.results import ClientTraffic, RoundResult, RunSummary


class AttackersInfo(BaseModel):
    """Who attacked, and how."""

    count: int
    attack: str | None
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
    voters: list[str]
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
    rounds: list[RoundReport]
    initial: dict[str, float]
    final: dict[str, float]
    participants: list[ParticipantReport]
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
) -> Report:
    """Assemble the report; ``money`` maps address -> (stake start, stake end, rewarded, slashed)."""
    attacker_set = set(attackers.addresses)
    participants = [
        ParticipantReport(
            address=address,
            honest=address not in attacker_set,
            stake_start_wei=money.get(address, (0, 0, 0, 0))[0],
            stake_end_wei=money.get(address, (0, 0, 0, 0))[1],
            rewarded_wei=money.get(address, (0, 0, 0, 0))[2],
            slashed_wei=money.get(address, (0, 0, 0, 0))[3],
        )
        for address in sorted(summary.partitions, key=lambda a: summary.partitions[a])
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
        rounds=[RoundReport(**r.model_dump(exclude={"dropped", "stakes"})) for r in rounds],
        initial=summary.initial_metrics,
        final=summary.final_metrics,
        participants=participants,
        wall_s=round(wall_s, 3),
    )
