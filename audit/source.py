"""Where an audit reads from: the chain directly (JSON-RPC + manifest) or a gateway's queries."""

from __future__ import annotations

import json
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
from fedledger.server.gateway.blobstore import BlobCorrupted, BlobNotFound, LocalBlobStore, keccak256
from fedledger.server.gateway.client import BlobVerificationError, GatewayClient
from fedledger.server.gateway.proto import gateway_pb2 as pb


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

    def fetch_blob(self, blob_hash: bytes) -> bytes | None:
        """The verified bytes of a blob, or None if it cannot be reached intact."""
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
        return _check_local(self.blobs, blob_hash)

    def fetch_blob(self, blob_hash: bytes) -> bytes | None:
        """A verified blob of the local store."""
        return _read_verified(self.blobs, blob_hash)


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
        return self.client.member(address)

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

    def fetch_blob(self, blob_hash: bytes) -> bytes | None:
        """A blob through the gateway, re-hashed here."""
        try:
            return self.client.fetch_blob(blob_hash)
        except (grpc.RpcError, BlobVerificationError):
            return None


class RunSource:
    """Read a finished ``fedledger simulate`` run folder: its chain export and its blob store.

    The embedded chain is gone once the gateway stops; the run keeps ``chain/events.json``
    (raw logs), ``chain/task.json``, ``chain/state.json`` (final balances) and ``gateway/blobs``.
    """

    def __init__(self, run: Path) -> None:
        """Load the export of the run folder ``run``."""
        chain = run / "chain"
        if not (chain / "events.json").is_file():
            raise FileNotFoundError(f"{run} has no chain export (chain/events.json); was it a governed run?")
        task = json.loads((chain / "task.json").read_text(encoding="utf-8"))
        self.task_address = str(task["task"])
        self.config = TaskConfig.model_validate(task["config"])
        self._state = json.loads((chain / "state.json").read_text(encoding="utf-8"))
        self._raw = json.loads((chain / "events.json").read_text(encoding="utf-8"))
        self._decoder = FLTaskContract(Web3(), self.task_address)
        self.blobs = LocalBlobStore(run / "gateway" / "blobs")

    def events(self) -> list[Event]:
        """The exported events, decoded from their raw logs."""
        decoded = []
        for e in self._raw:
            log = {
                "address": self.task_address,
                "topics": [HexBytes(t) for t in e["topics"]],
                "data": HexBytes(e["data"]),
                "blockNumber": e["block_number"],
                "transactionHash": HexBytes(e["transaction_hash"]),
                "logIndex": e["log_index"],
                "transactionIndex": 0,
                "blockHash": HexBytes(b"\0" * 32),
            }
            event = self._decoder.decode_log(log)
            if event is not None:
                decoded.append(event)
        return decoded

    def member(self, address: str) -> MemberInfo:
        """The member's balances when the run ended."""
        data = self._state["members"].get(address, {"stake": 0, "owed": 0})
        return MemberInfo(
            registered=True,
            exiting=False,
            exit_ready_at=0,
            stake=data["stake"],
            owed=data["owed"],
            nonce=0,
            index=data.get("index", 0),
        )

    def reward_pool(self) -> int:
        """The reward pool when the run ended."""
        return int(self._state["reward_pool"])

    def check_blob(self, blob_hash: bytes) -> tuple[BlobStatus, str]:
        """Re-hash a blob of the run's store."""
        return _check_local(self.blobs, blob_hash)

    def fetch_blob(self, blob_hash: bytes) -> bytes | None:
        """A verified blob of the run's store."""
        return _read_verified(self.blobs, blob_hash)


def _read_verified(store: LocalBlobStore | None, blob_hash: bytes) -> bytes | None:
    if store is None:
        return None
    try:
        return store.read_bytes(blob_hash)
    except (BlobNotFound, BlobCorrupted):
        return None


def _check_local(store: LocalBlobStore, blob_hash: bytes) -> tuple[BlobStatus, str]:
    try:
        store.verify(blob_hash)
    except BlobNotFound:
        return BlobStatus.UNREACHABLE, f"not in {store.root}"
    except BlobCorrupted as exc:
        return BlobStatus.CORRUPTED, str(exc)
    return BlobStatus.OK, ""
