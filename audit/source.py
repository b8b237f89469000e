"""Where an audit reads from: the chain directly (JSON-RPC + manifest) or a gateway's queries."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Protocol

import grpc
from hexbytes import HexBytes
from web3 import Web3

from fedledger.contracts.bindings import Event, FLTaskContract
from fedledger.contracts.types import MemberInfo, TaskConfig
from fedledger.deploy.chain import connect
from fedledger.deploy.manifest import DeploymentManifest
from fedledger.server.blobstore import BlobCorrupted, BlobNotFound, LocalBlobStore, keccak256
from fedledger.server.client import GatewayClient
from fedledger.server.proto import gateway_pb2 as pb


class BlobStatus(Enum):
    """Result of re-hashing one committed blob."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    CORRUPTED = "corrupted"


class AuditSource(Protocol):
    """What an audit reads: parameters, events, current member views and blobs."""

    task_address: str
    config: TaskConfig

    def events(self) -> list[Event]:
        """Every event of the task, in chain order."""
        ...

    def member(self, address: str) -> MemberInfo:
        """The contract's current view of a member."""
        ...

    def reward_pool(self) -> int:
        """The contract's current reward pool."""
        ...

    def check_blob(self, blob_hash: bytes) -> tuple[BlobStatus, str]:
        """Re-hash the blob committed as ``blob_hash``, if it can be reached."""
        ...


class ChainSource:
    """Read the chain through JSON-RPC; blobs from a local blob directory when given."""

    def __init__(self, rpc_url: str, deployment: Path, blob_dir: Path | None = None) -> None:
        """Connect to ``rpc_url`` for the task of ``deployment``."""
        self.manifest = DeploymentManifest.load(deployment)
        self.w3 = connect(rpc_url)
        self.task = FLTaskContract(self.w3, self.manifest.task.address)
        self.task_address = self.task.address
        self.config = self.task.config()
        self.blobs = LocalBlobStore(blob_dir) if blob_dir is not None else None

    def events(self) -> list[Event]:
        """Every event of the task since its deployment block."""
        return self.task.events(from_block=self.manifest.block_number)

    def member(self, address: str) -> MemberInfo:
        """The contract's view of ``address``."""
        return self.task.member(address)

    def reward_pool(self) -> int:
        """The contract's reward pool."""
        return self.task.reward_pool()

    def check_blob(self, blob_hash: bytes) -> tuple[BlobStatus, str]:
        """Re-hash a blob of the local store."""
        if self.blobs is None:
            return BlobStatus.UNREACHABLE, "no --blob-dir given"
        try:
            self.blobs.verify(blob_hash)
        except BlobNotFound:
            return BlobStatus.UNREACHABLE, "not in the blob directory"
        except BlobCorrupted as exc:
            return BlobStatus.CORRUPTED, str(exc)
        return BlobStatus.OK, ""


class GatewaySource:
    """Read through a gateway's query RPCs; events are decoded here from their raw logs."""

    def __init__(self, client: GatewayClient) -> None:
        """Use a connected gateway client."""
        self.client = client
        view = client.task()
        self.task_address = view.task_address
        self.config = view.config
        self._decoder = FLTaskContract(Web3(), view.task_address)  # no provider: decoding only

    def events(self) -> list[Event]:
        """Every event of the task, decoded with the contract ABI from the raw logs."""
        decoded = []
        for e in self.client.events():
            log = {
                "address": self.task_address,
                "topics": [HexBytes(t) for t in e.topics],
                "data": HexBytes(e.data),
                "blockNumber": e.block_number,
                "transactionHash": HexBytes(e.transaction_hash),
                "logIndex": e.log_index,
                "transactionIndex": 0,
                "blockHash": HexBytes(b"\0" * 32),
            }
            event = self._decoder.decode_log(log)
            if event is not None:
                decoded.append(event)
        return decoded

    def member(self, address: str) -> MemberInfo:
        """The contract's view of ``address``, through the gateway."""
        info = self.client.account(address)
        return MemberInfo(
            registered=info.registered,
            exiting=info.exiting,
            exit_ready_at=info.exit_ready_at,
            stake=int(info.stake_wei),
            owed=int(info.owed_wei),
            nonce=0,
        )

    def reward_pool(self) -> int:
        """The contract's reward pool, through the gateway."""
        return int(self.client.task_info().reward_pool_wei)

    def check_blob(self, blob_hash: bytes) -> tuple[BlobStatus, str]:
        """Fetch the blob (the gateway verifies it) and re-hash it here."""
        try:
            chunks = self.client.stub.FetchBlob(pb.FetchBlobRequest(hash=blob_hash), timeout=self.client.timeout)
            data = b"".join(c.data for c in chunks)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return BlobStatus.UNREACHABLE, "the gateway does not hold it"
            if exc.code() == grpc.StatusCode.DATA_LOSS:
                return BlobStatus.CORRUPTED, exc.details() or "the gateway reports corruption"
            raise
        if keccak256(data) != blob_hash:
            return BlobStatus.CORRUPTED, "served bytes hash to something else"
        return BlobStatus.OK, ""
