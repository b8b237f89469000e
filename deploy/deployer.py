"""Deploy the code store, the factory and a task, and describe the result in a manifest."""

from __future__ import annotations

from hexbytes import HexBytes
from web3 import Web3

from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.bindings import FLTaskContract, FLTaskFactoryContract, Sent, deploy_contract
from fedledger.contracts.compiler import SOLC_VERSION
from fedledger.contracts.types import TaskConfig

from .manifest import ContractRecord, DeploymentManifest


def _record(address: str, sent: Sent, artifact: str) -> ContractRecord:
    receipt = sent.receipt
    return ContractRecord(
        address=address,
        transaction_hash=HexBytes(receipt["transactionHash"]).to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
        bytecode_hash=load_artifact(artifact).bytecode_hash,
    )


def deploy_factory(w3: Web3, deployer: str) -> tuple[FLTaskFactoryContract, ContractRecord, ContractRecord]:
    """Deploy the TaskCodeStore (FLTask's creation code) and the factory that uses it."""
    creation_code = HexBytes(load_artifact("FLTask").bytecode)
    store, store_sent = deploy_contract(w3, "TaskCodeStore", deployer, creation_code)
    factory_address, factory_sent = deploy_contract(w3, "FLTaskFactory", deployer, store)
    return (
        FLTaskFactoryContract(w3, factory_address),
        _record(store, store_sent, "TaskCodeStore"),
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
    factory, store_record, factory_record = deploy_factory(w3, deployer)
    task, sent = factory.create_task(deployer, config, pool=pool_wei)
    block = w3.eth.get_block(sent.receipt["blockNumber"])
    manifest = DeploymentManifest(
        chain_id=w3.eth.chain_id,
        rpc_url=rpc_url,
        deployer=deployer,
        block_number=int(sent.receipt["blockNumber"]),
        timestamp=int(block["timestamp"]),
        solc_version=SOLC_VERSION,
        code_store=store_record,
        factory=factory_record,
        task=_record(task.address, sent, "FLTask"),
        task_config=config,
        reward_pool_wei=pool_wei,
    )
    return manifest, task
