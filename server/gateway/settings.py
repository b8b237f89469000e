"""How the gateway serves.

A light module: the command line reads its defaults from here without loading the gateway or Flower.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
