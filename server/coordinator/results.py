"""What the ServerApp records while it runs: progress events and one result per round.

Files in the run folder: ``progress.jsonl`` (one event per phase change, read live by
``fedledger simulate``), ``rounds.jsonl`` (one :class:`RoundResult` per round) and
``summary.json`` (:class:`RunSummary`). ``fedledger simulate`` turns them into report.json.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from pydantic import BaseModel, Field


class DroppedUpdate(BaseModel):
    """An update left out because it could not be fetched or did not match its commitment."""

    address: str
    reason: str


class ClientTraffic(BaseModel):
    """Bytes one client exchanged in a round: serialized Flower messages and its own gateway calls."""

    flower_down: int = 0
    flower_up: int = 0
    gateway_down: int = 0
    gateway_up: int = 0

    @property
    def total(self) -> int:
        """Both directions, both channels."""
        return self.flower_down + self.flower_up + self.gateway_down + self.gateway_up


class RoundResult(BaseModel):
    """One round as the coordinator saw it."""

    round: int
    accepted: bool | None = Field(description="a new global model was adopted (null without governance)")
    tally: list[int] | None = Field(description="per-proposer tallies, or [the candidate's tally]")
    proposers: list[str]
    rejected: list[str] = Field(description="proposers whose update was voted down")
    undecided: list[str] = Field(
        default_factory=list, description="proposers whose update had no quorum of informed reviewers (left out)"
    )
    accepted_proposers: list[str] = Field(
        default_factory=list, description="proposers whose update was voted in (aggregate: all of an adopted candidate)"
    )
    voters: list[str]
    reviewers: int = Field(default=0, description="reviewers per update in effect (the voters, when all judge all)")
    evaluations: int = Field(default=0, description="items the voters were sent to judge (P x V, or P x k)")
    dropped: list[DroppedUpdate] = []
    metrics: dict[str, float]
    gas_used: int = 0
    bytes_up: int = Field(default=0, description="sum over clients of Flower reply and gateway request bytes")
    bytes_down: int = Field(default=0, description="sum over clients of Flower message and gateway response bytes")
    traffic: dict[str, ClientTraffic] = Field(default_factory=dict, description="per client address, measured")
    coordinator_gateway_bytes: int = Field(default=0, description="the coordinator's own gateway calls, both ways")
    wall_s: float
    stakes: dict[str, int] = Field(default_factory=dict, description="stake of each participant after the round")
    credited: dict[str, int] = Field(
        default_factory=dict, description="rewards and released stake credited to each participant, not yet withdrawn"
    )


class RunSummary(BaseModel):
    """The run's fixed facts and final numbers."""

    strategy: str
    task: str
    governance: bool
    seed: int
    clients: int
    vote_mode: str | None
    nodes: dict[str, int] = Field(description="on-chain address -> Flower node id")
    partitions: dict[str, int] = Field(description="on-chain address -> partition id")
    initial_metrics: dict[str, float]
    final_metrics: dict[str, float]
    task_address: str | None = None
    chain_id: int | None = None
    wall_s: float


class Recorder:
    """Appends progress events and round results under ``out``."""

    def __init__(self, out: Path) -> None:
        """Write into ``out`` (created)."""
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()

    def _append(self, name: str, line: str) -> None:
        with (self.out / name).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def event(self, round_: int, phase: str, **detail: object) -> None:
        """A phase change (``fedledger simulate`` shows it live)."""
        record = {"t": round(time.monotonic() - self.started, 3), "round": round_, "phase": phase, **detail}
        self._append("progress.jsonl", json.dumps(record, default=str))

    def round_done(self, result: RoundResult) -> None:
        """A finished round."""
        self._append("rounds.jsonl", result.model_dump_json())
        self.event(result.round, "done", accepted=result.accepted, **result.metrics)

    def failed(self, error: BaseException) -> None:
        """Keep a crashed ServerApp's traceback for the runner (Flower's log only says it crashed)."""
        text = "".join(traceback.format_exception(error))
        (self.out / "error.txt").write_text(text, encoding="utf-8")
        self.event(0, "failed", error=f"{type(error).__name__}: {error}")

    def finish(self, summary: RunSummary) -> None:
        """The run's summary (written last: its presence means the ServerApp completed)."""
        tmp = self.out / "summary.json.tmp"
        tmp.write_text(summary.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self.out / "summary.json")


def read_rounds(out: Path) -> list[RoundResult]:
    """The round results written so far."""
    path = out / "rounds.jsonl"
    if not path.is_file():
        return []
    return [RoundResult.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
