"""Typed Python client of the gateway, for nodes, the coordinator, the audit and tests.

Keys stay with the caller: actions are signed locally (EIP-712 or raw transactions) and only
signatures travel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from eth_account.signers.local import LocalAccount
from grpc_health.v1 import health_pb2, health_pb2_grpc
from web3 import Web3

from fedledger.contracts import typed_data as td
from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.types import MemberInfo, TaskConfig, vote_commitment

from .blobstore import CHUNK_BYTES, keccak256
from .checks import message_to_json
from .proto import gateway_pb2 as pb
from .proto import gateway_pb2_grpc as pb_grpc
from .traffic import ByteCounter

SIGNATURE_LIFETIME = 600
FETCH_THREADS = 8
"""Blobs :meth:`GatewayClient.fetch_blobs` downloads at once."""
CLOCK_REFRESH = 5.0
"""Seconds the chain clock's lead over this machine's clock is reused before it is read again."""
"""Seconds a signed action stays valid after the chain time it was signed at."""

_SERVICE = "fedledger.gateway.v1.Gateway"
_READS = ("GetTask", "GetAccount", "PrepareTransaction", "FetchBlob", "GetRound", "GetParticipant", "GetEvents")
SERVICE_CONFIG = {
    "methodConfig": [
        # Every call waits for the gateway to (re)appear instead of failing at once, so a node or
        # coordinator survives a gateway restart; a call still fails at its own deadline.
        {"name": [{"service": _SERVICE}], "waitForReady": True},
        # Reads have no effect: gRPC may resend them transparently if the gateway went away mid-call.
        {
            "name": [{"service": _SERVICE, "method": m} for m in _READS],
            "waitForReady": True,
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.5s",
                "maxBackoff": "4s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],  # CANCELLED: the gateway shut down mid-call
            },
        },
    ]
}
"""Channel service config: wait for readiness, retry reads (gRPC service config JSON)."""


@dataclass(frozen=True)
class TaskView:
    """What a client needs to know about the task behind a gateway."""

    chain_id: int
    task_address: str
    relayer: str
    config: TaskConfig
    max_blob_bytes: int

    @property
    def domain(self) -> td.Domain:
        """The EIP-712 domain for signing actions."""
        return td.Domain(self.chain_id, self.task_address)


class BlobVerificationError(Exception):
    """Fetched bytes do not hash to the requested blob hash."""


def read_ca(path: str | Path | None) -> bytes | None:
    """The CA certificate (PEM) at ``path`` for ``root_certificates``; None for a plain-text gateway (no path)."""
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the gateway's CA certificate {path}: {exc.strerror}") from exc


class GatewayClient:
    """One connection to a gateway; ``traffic`` counts the bytes of every message both ways."""

    def __init__(
        self,
        address: str,
        *,
        root_certificates: bytes | None = None,
        timeout: float = 330.0,
        reconnect: bool = False,
    ) -> None:
        """Connect to ``address`` (``host:port``), over TLS when ``root_certificates`` (a CA PEM) is given.

        ``reconnect=True`` is for long-lived components (coordinator, nodes): calls wait for an
        absent gateway to come back (until their deadline) and reads are retried, see
        :data:`SERVICE_CONFIG`. Without it a call to an absent gateway fails at once (commands).
        """
        options: list[tuple[str, str | int]] = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]
        if reconnect:
            options += [
                ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
                ("grpc.enable_retries", 1),
                # Reconnect quickly after a gateway restart (gRPC's default backoff grows to 120 s).
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ]
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.traffic = ByteCounter()
        self.stub = pb_grpc.GatewayStub(grpc.intercept_channel(self.channel, self.traffic))
        self.timeout = timeout
        self._task: TaskView | None = None
        self._clock: tuple[float, int] | None = None
        """(when it was read, how many seconds the chain's clock is ahead of ours, at least 0)."""
        self._abi = Web3().eth.contract(abi=load_artifact("FLTask").abi)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the gateway answers its health check with SERVING."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"gateway not ready after {timeout:.0f}s: {last}")

    # ------------------------------------------------------------------ task

    def task(self, refresh: bool = False) -> TaskView:
        """Task parameters (cached after the first call)."""
        if self._task is None or refresh:
            info = self.stub.GetTask(pb.GetTaskRequest(), timeout=self.timeout)
            self._task = TaskView(
                chain_id=info.chain_id,
                task_address=info.task_address,
                relayer=info.relayer_address,
                config=TaskConfig.model_validate_json(info.config_json),
                max_blob_bytes=info.max_blob_bytes,
            )
        return self._task

    def task_info(self) -> pb.TaskInfo:
        """The raw TaskInfo (current round, pool, global model hash)."""
        return self.stub.GetTask(pb.GetTaskRequest(), timeout=self.timeout)

    def account(self, address: str) -> pb.AccountInfo:
        """Nonces, balance and membership of ``address``."""
        return self.stub.GetAccount(pb.GetAccountRequest(address=address), timeout=self.timeout)

    def balances(self, addresses: list[str]) -> dict[str, tuple[int, int]]:
        """Address -> (stake, credited balance) in wei, for many accounts in one request."""
        reply = self.stub.GetBalances(pb.GetBalancesRequest(addresses=addresses), timeout=self.timeout)
        return {b.address: (int(b.stake_wei), int(b.owed_wei)) for b in reply.balances}

    def member(self, address: str) -> MemberInfo:
        """The task's view of ``address`` (``nonce``: the next membership-action nonce, queued ones counted)."""
        info = self.account(address)
        return MemberInfo(
            registered=info.registered,
            exiting=info.exiting,
            exit_ready_at=info.exit_ready_at,
            stake=int(info.stake_wei),
            owed=int(info.owed_wei),
            nonce=info.action_nonce,
            index=info.member_index,
        )

    def round(self, round_: int = 0, *, brief: bool = False, gas: bool = False) -> pb.RoundState:
        """State of ``round_`` (0: the current); ``brief`` skips the per-seat lists, ``gas`` sums the round's gas."""
        request = pb.GetRoundRequest(round=round_, brief=brief, gas=gas)
        return self.stub.GetRound(request, timeout=self.timeout)

    def wait_for_phase(self, round_: int, phase: str, timeout: float = 300.0, poll: float = 0.25) -> pb.RoundState:
        """Poll (cheaply) until ``round_`` reaches ``phase`` (or finalizes); return its brief state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.round(round_, brief=True)
            if state.phase == phase or state.phase == "FINALIZED":
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"round {round_} is still {state.phase}, not {phase}, after {timeout:.0f}s")
            time.sleep(poll)

    def events(self, round_: int = 0, participant: str = "", names: tuple[str, ...] = ()) -> list[pb.Event]:
        """Task events, optionally of one round and/or participant."""
        request = pb.GetEventsRequest(round=round_, participant=participant, names=list(names))
        return list(self.stub.GetEvents(request, timeout=self.timeout).events)

    def _deadline(self) -> int:
        # An idle embedded chain mines no blocks, so its latest timestamp lags the clock; a chain
        # whose time was moved forward is ahead of it. Reading the chain's time for every signed
        # command cost a round trip each, so its lead is kept for CLOCK_REFRESH seconds.
        now = time.time()
        if self._clock is None or now - self._clock[0] > CLOCK_REFRESH:
            self._clock = (now, max(0, int(self.round(brief=True).chain_time) - int(now)))
        return int(now) + self._clock[1] + SIGNATURE_LIFETIME

    # --------------------------------------------------------- raw transactions

    def signed_transaction(self, account: LocalAccount, function: str, *args: Any, value: int = 0) -> bytes:
        """Build and sign a task transaction locally (nonce, gas and fees from the gateway)."""
        data = bytes.fromhex(self._abi.encode_abi(function, args=list(args))[2:])
        prepared = self.stub.PrepareTransaction(
            pb.PrepareTransactionRequest(**{"from": account.address}, data=data, value_wei=str(value)),
            timeout=self.timeout,
        )
        tx = {
            "type": 2,
            "chainId": prepared.chain_id,
            "nonce": prepared.nonce,
            "to": prepared.to,
            "value": value,
            "data": data,
            "gas": prepared.gas,
            "maxFeePerGas": int(prepared.max_fee_per_gas),
            "maxPriorityFeePerGas": int(prepared.max_priority_fee_per_gas),
        }
        return bytes(account.sign_transaction(tx).raw_transaction)

    def send_transaction(self, raw: bytes) -> pb.TransactionResult:
        """Broadcast a signed register / addStake / fundPool transaction."""
        return self.stub.SendTransaction(pb.SendTransactionRequest(raw_transaction=raw), timeout=self.timeout)

    def register(self, account: LocalAccount, stake_wei: int) -> pb.TransactionResult:
        """Join the task with ``stake_wei`` (the account pays its own stake and gas)."""
        return self.send_transaction(self.signed_transaction(account, "register", value=stake_wei))

    def add_stake(self, account: LocalAccount, amount_wei: int) -> pb.TransactionResult:
        """Add stake."""
        return self.send_transaction(self.signed_transaction(account, "addStake", value=amount_wei))

    # ------------------------------------------------------------- actions

    def sign(
        self, account: LocalAccount, action: td.ActionType, message: dict[str, Any], *, wait: bool = True
    ) -> pb.SignedAction:
        """Sign an action as ``account`` and wrap it for an RPC (``wait=False``: answer once queued)."""
        signed = td.sign_action(account, action, message, self.task().domain)
        return pb.SignedAction(
            action=action.name, message_json=message_to_json(message), signature=signed.signature, no_wait=not wait
        )

    def submit_update(
        self,
        account: LocalAccount,
        round_: int,
        data: bytes,
        num_examples: int,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        wait: bool = True,
    ) -> pb.ActionResult:
        """Stream an update and its signed commitment; returns once the commitment is on chain (or rejected).

        With ``wait=False`` it returns QUEUED as soon as the gateway checked, stored and queued it.
        """
        message = td.commit_update_message(account.address, round_, keccak256(data), num_examples)
        commitment = self.sign(account, td.COMMIT_UPDATE, message, wait=wait)
        header = pb.SubmitUpdateHeader(commitment=commitment, size=len(data))
        return self.stub.SubmitUpdate(_stream(pb.SubmitUpdateMessage, header, data, chunk_bytes), timeout=self.timeout)

    def vote_salt(self, account: LocalAccount, round_: int) -> bytes:
        """The salt ``account`` hides its round-``round_`` vote with (:func:`typed_data.vote_salt`)."""
        return td.vote_salt(account, round_, self.task().domain)

    def commit_vote(
        self, account: LocalAccount, round_: int, bits: int, salt: bytes, *, wait: bool = True
    ) -> pb.ActionResult:
        """Commit a hidden vote (keep ``salt`` to reveal it)."""
        candidate = (
            self.round(round_, brief=True).candidate if self.task().config.vote_mode.label == "aggregate" else b""
        )
        commitment = vote_commitment(
            self.task().task_address, round_, candidate or b"\0" * 32, bits, salt, account.address
        )
        message = td.commit_vote_message(account.address, round_, commitment)
        return self.stub.CommitVote(self.sign(account, td.COMMIT_VOTE, message, wait=wait), timeout=self.timeout)

    def reveal_vote(
        self, account: LocalAccount, round_: int, bits: int, salt: bytes, *, wait: bool = True
    ) -> pb.ActionResult:
        """Reveal a committed vote."""
        message = td.reveal_vote_message(account.address, round_, bits, salt)
        return self.stub.RevealVote(self.sign(account, td.REVEAL_VOTE, message, wait=wait), timeout=self.timeout)

    def member_action(self, account: LocalAccount, action: td.ActionType) -> pb.ActionResult:
        """Relay a RequestExit, CompleteExit or Withdraw signed by ``account``."""
        nonce = self.account(account.address).action_nonce
        message = td.member_message(account.address, nonce, self._deadline())
        return self.stub.RelayMemberAction(self.sign(account, action, message), timeout=self.timeout)

    def fetch_blob(self, blob_hash: bytes) -> bytes:
        """Download a blob and check its hash here too."""
        data = b"".join(c.data for c in self.stub.FetchBlob(pb.FetchBlobRequest(hash=blob_hash), timeout=self.timeout))
        if keccak256(data) != blob_hash:
            raise BlobVerificationError(f"blob 0x{blob_hash.hex()} arrived with other bytes")
        return data

    def fetch_blobs(self, blob_hashes: list[bytes], threads: int = FETCH_THREADS) -> list[bytes | Exception]:
        """Download several blobs concurrently (one stream each), checked as :meth:`fetch_blob` does.

        In the order asked; a blob that could not be fetched is its ``grpc.RpcError`` or
        :class:`BlobVerificationError` instead of its bytes.
        """

        def fetch(blob_hash: bytes) -> bytes | Exception:
            try:
                return self.fetch_blob(blob_hash)
            except (grpc.RpcError, BlobVerificationError) as exc:
                return exc

        if len(blob_hashes) <= 1:
            return [fetch(h) for h in blob_hashes]
        with ThreadPoolExecutor(min(threads, len(blob_hashes))) as pool:
            return list(pool.map(fetch, blob_hashes))

    # --------------------------------------------------------------- coordinator

    def command(
        self, coordinator: LocalAccount, command: str, round_: int, subject: bytes = b"\0" * 32
    ) -> pb.CoordinatorCommand:
        """A coordinator command signed by ``coordinator``."""
        deadline = self._deadline()
        message = td.coordinator_command_message(command, round_, subject, deadline)
        signature = td.sign_coordinator_command(coordinator, message, self.task().domain)
        return pb.CoordinatorCommand(
            command=command, round=round_, subject=subject, deadline=deadline, signature=signature
        )

    def open_round(self, coordinator: LocalAccount) -> pb.RoundRoles:
        """Open the next round; returns the drawn roles."""
        raw = self.signed_transaction(coordinator, "openRound")
        return self.stub.OpenRound(pb.SendTransactionRequest(raw_transaction=raw), timeout=self.timeout)

    def propose_model(
        self, coordinator: LocalAccount, function: str, round_: int, data: bytes, *extra: Any
    ) -> pb.TransactionResult:
        """Store ``data`` and call ``proposeAggregate``, ``publishAndOpen`` or ``publishGlobal`` with its hash.

        ``extra`` are further arguments (proposeAggregate's openNext); a ``publishAndOpen`` result
        carries the opened round's roles.
        """
        raw = self.signed_transaction(coordinator, function, round_, keccak256(data), *extra)
        header = pb.ProposeModelHeader(raw_transaction=raw, size=len(data))
        return self.stub.ProposeModel(_stream(pb.ProposeModelMessage, header, data, CHUNK_BYTES), timeout=self.timeout)

    def store_blob(self, coordinator: LocalAccount, data: bytes) -> pb.BlobInfo:
        """Store a model blob (e.g. the initial model) as the coordinator."""
        header = pb.StoreBlobHeader(command=self.command(coordinator, "storeBlob", 0, keccak256(data)), size=len(data))
        return self.stub.StoreBlob(_stream(pb.StoreBlobMessage, header, data, CHUNK_BYTES), timeout=self.timeout)

    def advance_phase(self, coordinator: LocalAccount, round_: int) -> pb.TransactionResult:
        """Relay queued actions, then advance ``round_``."""
        return self.stub.AdvancePhase(self.command(coordinator, "advancePhase", round_), timeout=self.timeout)

    def flush(self, coordinator: LocalAccount) -> int:
        """Relay everything queued at the gateway now; return how many actions that was."""
        return self.stub.FlushQueue(self.command(coordinator, "flush", 0), timeout=self.timeout).actions

    def finalize_round(self, coordinator: LocalAccount, round_: int) -> pb.TransactionResult:
        """Relay queued reveals, then finalize ``round_``."""
        return self.stub.FinalizeRound(self.command(coordinator, "finalizeRound", round_), timeout=self.timeout)


def _stream(message_type: Any, header: Any, data: bytes, chunk_bytes: int) -> Iterator[Any]:
    yield message_type(header=header)
    for offset in range(0, len(data), chunk_bytes):
        yield message_type(chunk=data[offset : offset + chunk_bytes])


def event_args(event: pb.Event) -> dict[str, Any]:
    """The JSON arguments of an event."""
    return dict(json.loads(event.args_json))
