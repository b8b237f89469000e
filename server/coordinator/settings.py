"""The options of ``fedledger coordinate``.

A light module: the command line reads its defaults from here without loading Flower.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fedledger.server.gateway.settings import DEFAULT_GATEWAY

DEFAULT_SUPERLINK_DB = Path(".fedledger/superlink/state.db")


class CoordinatorOptions(BaseModel):
    """The options of ``fedledger coordinate``."""

    model_config = ConfigDict(frozen=True)

    gateway: str = DEFAULT_GATEWAY
    keystore: Path
    nodes: int = Field(default=3, ge=2, description="nodes to wait for before the first round")
    rounds: int | None = Field(default=None, ge=1, description="rounds to run (default: all the task has left)")
    task: str | None = None
    strategy_options: str = ""
    seed: int = Field(default=0, ge=0)
    partition: str = "iid"
    local_epochs: int = Field(default=5, ge=1)
    lr: float = Field(default=0.1, gt=0)
    batch_size: int = Field(default=32, ge=1)
    port: int = Field(default=9092, gt=0, lt=65536, description="SuperLink port (nodes and flwr connect here)")
    node_wait: float = Field(default=600.0, gt=0, description="seconds to wait for the nodes")
    superlink_db: Path = Field(
        default=DEFAULT_SUPERLINK_DB, description="the SuperLink's state: nodes stay known across coordinator restarts"
    )
    out: Path | None = None
