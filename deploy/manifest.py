"""The deployment manifest: where the contracts live and with which parameters.

Written by ``fedledger deploy --out FILE`` and read by the gateway, the coordinator and
``fedledger audit``. The schema is documented in docs/deployment-manifest.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fedledger.contracts.types import TaskConfig


class ContractRecord(BaseModel):
    """One deployed contract."""

    model_config = ConfigDict(frozen=True)

    address: str
    transaction_hash: str
    block_number: int
    gas_used: int
    bytecode_hash: str = Field(description="keccak256 of the artifact's creation bytecode (libraries linked)")


class DeploymentManifest(BaseModel):
    """Everything needed to find and check a deployed task."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[2] = 2
    chain_id: int
    rpc_url: str | None = Field(description="JSON-RPC URL, or null for the embedded chain")
    deployer: str
    block_number: int = Field(description="block in which the task was created")
    timestamp: int = Field(description="block timestamp of the task creation")
    solc_version: str
    libraries: dict[str, ContractRecord] = Field(description="linked libraries (Registry, Settlement) by name")
    code_stores: list[ContractRecord] = Field(
        description="TaskCodeStores holding FLTask's linked creation code, in order"
    )
    factory: ContractRecord = Field(description="FLTaskFactory, the registry of tasks")
    task: ContractRecord = Field(description="the FLTask created by the factory")
    task_config: TaskConfig
    reward_pool_wei: int

    @property
    def gas_used(self) -> dict[str, int]:
        """Gas of each deployment transaction."""
        return {
            **{name: record.gas_used for name, record in self.libraries.items()},
            "TaskCodeStore": sum(record.gas_used for record in self.code_stores),
            "FLTaskFactory": self.factory.gas_used,
            "FLTask": self.task.gas_used,
        }

    def records(self) -> list[tuple[str, ContractRecord]]:
        """Every deployed contract with its name, in deployment order."""
        stores = [(f"TaskCodeStore {i + 1}/{len(self.code_stores)}", r) for i, r in enumerate(self.code_stores)]
        return [*self.libraries.items(), *stores, ("FLTaskFactory", self.factory), ("FLTask", self.task)]

    def save(self, path: Path) -> None:
        """Write the manifest as JSON atomically, creating parent folders."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> DeploymentManifest:
        """Read a manifest written by :meth:`save`."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
