"""How the gateway serves and the coordinator runs.

A light module: the command line reads its defaults from here without loading the gateway or Flower.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .blobstore import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class GatewaySettings:
    """How to serve: address, storage and relaying parameters."""

    host: str = "127.0.0.1"
    port: int = 50051
    data_dir: Path = Path(".fedledger/gateway")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_blob_bytes: int = DEFAULT_MAX_BYTES
    flush_window: float = 2.0
    max_batch: int = 64
    workers: int = 128
    health_interval: float = 5.0


DEFAULT_GATEWAY = f"{GatewaySettings.host}:{GatewaySettings.port}"
"""Where commands look for the gateway unless told."""
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
