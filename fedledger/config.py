"""Settings of one federated run, shared by `fedledger simulate`, the ServerApp and the ClientApp.

Flower passes them as the run config (``[tool.flwr.app.config]`` and ``flwr run --run-config``),
whose values are flat strings, numbers and booleans with kebab-case keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_POOL_WEI = 10 * 10**18
"""The reward pool a task is deployed with unless told otherwise (deploy, gateway serve, simulate)."""


class RunSettings(BaseModel):
    """Everything the Flower apps need to know about a run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str = Field(default="digits", description="task name (fedledger.simulation.tasks)")
    strategy: str = Field(default="fedavg", description="strategy name (entry point group fedledger.strategies)")
    strategy_options: str = Field(default="", description="the strategy's hyper-parameters, KEY=VALUE,...")
    num_clients: int = Field(default=10, ge=2, description="number of simulated clients")
    rounds: int = Field(default=5, ge=1)
    seed: int = Field(default=0, ge=0)
    partition: str = Field(default="iid", description="iid or dirichlet:ALPHA")
    attackers: str = Field(default="", description="comma-separated partition ids of attackers")
    attack: str = Field(default="", description="the attackers' update attack (simulation/attacks.py)")
    voter_attack: str = Field(default="honest", description="the attackers' voter attack (simulation/attacks.py)")
    governance: bool = Field(default=True, description="False: the same strategy as plain Flower")
    gateway: str = Field(default="127.0.0.1:50051", description="gateway address host:port")
    gateway_ca: str = Field(default="", description="CA certificate (PEM) of the gateway's TLS ('' = plain text)")
    out_dir: str = Field(default="", description="where the ServerApp writes results ('' = ./runs/flwr)")
    local_epochs: int = Field(default=5, ge=1)
    lr: float = Field(default=0.1, gt=0)
    batch_size: int = Field(default=32, ge=1)
    stake_wei: str = Field(default=str(2 * 10**18), description="stake each client registers with")
    proposer_share: float = Field(default=0.5, gt=0, le=1, description="share of clients sampled without governance")
    keys: str = Field(default="dev", description="'dev': derived dev keys; else a folder of keystores")
    node_wait: float = Field(default=120.0, gt=0, description="seconds the ServerApp waits for num_clients nodes")
    coordinator_keystore: str = Field(
        default="", description="the coordinator's keystore (live federations; overrides keys)"
    )

    @field_validator("stake_wei")
    @classmethod
    def _wei(cls, value: str) -> str:
        if not value.isdigit() or int(value) <= 0:
            raise ValueError("stake_wei must be a positive integer (wei)")
        return value

    def attacker_ids(self) -> set[int]:
        """Partition ids of the attackers."""
        return {int(p) for p in self.attackers.split(",") if p.strip()}

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        """As Flower run config (kebab-case keys)."""
        return {name.replace("_", "-"): value for name, value in self.model_dump().items()}

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """From Flower's ``context.run_config`` (unknown keys are ignored)."""
        fields = {key.replace("-", "_"): value for key, value in config.items()}
        return cls(**{k: v for k, v in fields.items() if k in cls.model_fields})

    def run_config_overrides(self) -> list[str]:
        """``flwr run --run-config`` arguments (TOML values)."""
        import json

        overrides = []
        for key, value in self.to_run_config().items():
            if isinstance(value, bool):
                overrides.append(f"{key}={str(value).lower()}")
            elif isinstance(value, str):
                overrides.append(f"{key}={json.dumps(value)}")
            else:
                overrides.append(f"{key}={value}")
        return overrides
