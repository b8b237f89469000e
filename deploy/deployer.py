"""Deploy the code store, the factory and a task, and describe the result in a manifest."""

from __future__ import annotations

from hexbytes import HexBytes
from web3 import Web3

from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.bindings import FLTaskContract, FLTaskFactoryContract, Sent, deploy_contract
from fedledger.contracts.compiler import SOLC_VERSION
from fedledger.contracts.types import TaskConfig

from .manifest import ContractRecord, DeploymentManifest


def _record(address: str, sent: Sent, artifact: str, libraries: dict[str, str] | None = None) -> ContractRecord:
    receipt = sent.receipt
    return ContractRecord(
        address=address,
        transaction_hash=HexBytes(receipt["transactionHash"]).to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
        bytecode_hash=load_artifact(artifact).bytecode_hash(libraries),
    )


CODE_PART_BYTES = 24_000
"""Largest piece of FLTask's creation code one TaskCodeStore holds (EIP-170: 24,576 bytes of runtime code)."""


def deploy_libraries(w3: Web3, deployer: str) -> dict[str, tuple[str, Sent]]:
    """Deploy the libraries FLTask links (Registry, Settlement); addresses and receipts by name."""
    deployed: dict[str, tuple[str, Sent]] = {}
    for name in load_artifact("FLTask").libraries:
        deployed[name] = deploy_contract(w3, name, deployer)
    return deployed


def deploy_factory(
    w3: Web3, deployer: str
) -> tuple[FLTaskFactoryContract, dict[str, ContractRecord], list[ContractRecord], ContractRecord]:
    """Deploy the libraries, the TaskCodeStores holding FLTask's linked creation code, and the factory."""
    libraries = deploy_libraries(w3, deployer)
    creation_code = HexBytes(load_artifact("FLTask").linked_bytecode({n: a for n, (a, _) in libraries.items()}))
    stores: list[tuple[str, Sent]] = []
    for start in range(0, len(creation_code), CODE_PART_BYTES):
        stores.append(deploy_contract(w3, "TaskCodeStore", deployer, creation_code[start : start + CODE_PART_BYTES]))
    factory_address, factory_sent = deploy_contract(w3, "FLTaskFactory", deployer, [a for a, _ in stores])
    return (
        FLTaskFactoryContract(w3, factory_address),
        {name: _record(address, sent, name) for name, (address, sent) in libraries.items()},
        [_record(address, sent, "TaskCodeStore") for address, sent in stores],
        _record(factory_address, factory_sent, "FLTaskFactory"),
    )


def deploy_task(
    w3: Web3,
    deployer: str,
    config: TaskConfig,
    *,
    pool_wei: int = 0,
    rpc_url: str | None = None,
) -> tuple[DeploymentManifest, FLTaskContract]:
    """Deploy a fresh factory and create one task with ``config`` and a ``pool_wei`` reward pool."""
    factory, library_records, store_records, factory_record = deploy_factory(w3, deployer)
    task, sent = factory.create_task(deployer, config, pool=pool_wei)
    block = w3.eth.get_block(sent.receipt["blockNumber"])
    manifest = DeploymentManifest(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        deployer=deployer,
        block_number=int(sent.receipt["blockNumber"]),
        timestamp=int(block["timestamp"]),
        solc_version=SOLC_VERSION,
        libraries=library_records,
        code_stores=store_records,
        factory=factory_record,
        task=_record(task.address, sent, "FLTask", {name: r.address for name, r in library_records.items()}),
        task_config=config,
        reward_pool_wei=pool_wei,
    )
    return manifest, task
