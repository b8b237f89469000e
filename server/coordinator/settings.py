"""The options of ``fedledger coordinate``.

A light module: the command line reads its defaults from here without loading Flower.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    host: str = Field(default="127.0.0.1", description="address the SuperLink listens on (nodes connect to it)")
    tls_ca: Path | None = Field(default=None, description="CA that the gateway's and SuperLink's TLS are checked with")
    tls_cert: Path | None = Field(default=None, description="the SuperLink's TLS certificate (PEM), with tls_key")
    tls_key: Path | None = Field(default=None, description="the SuperLink's TLS private key (PEM)")
    allow_nodes: tuple[Path, ...] = Field(
        default=(), description="SuperNode public keys admitted (SuperNode authentication); empty: any node"
    )

    @model_validator(mode="after")
    def _tls_complete(self) -> CoordinatorOptions:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError("a SuperLink with --tls-cert needs --tls-ca: the CA flwr and the ServerApp check it with")
        for path in (self.tls_ca, self.tls_cert, self.tls_key, *self.allow_nodes):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} does not exist")
        return self
