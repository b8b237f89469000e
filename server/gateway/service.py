"""The gateway's gRPC service: decode, check, store, queue or send, answer."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from fedledger.contracts import typed_data as td
from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.bindings import GAS_MARGIN, Event, Sent
from fedledger.contracts.errors import as_contract_revert
from fedledger.contracts.history import RoundHistory
from fedledger.contracts.types import Phase, VoteMode
from fedledger.deploy.chain import ChainUnavailable

from . import checks
from .blobstore import (
    BlobCorrupted,
    BlobHashMismatch,
    BlobNotFound,
    BlobStore,
    BlobTooLarge,
    BlobTruncated,
)
from .checks import GatewayError, invalid
from .ledger import Ledger
from .proto import gateway_pb2 as pb
from .proto import gateway_pb2_grpc as pb_grpc
from .relayer import DuplicateAction, Outcome, Relayer, RelayFailed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _RawCall:
    """A signed raw transaction to the task, decoded once: its bytes, sender, fields and call arguments."""

    raw: bytes
    sender: str
    fields: dict[str, Any]
    args: dict[str, Any]
    function: str = ""


T = TypeVar("T")

PARTICIPANT_FUNCTIONS = ("register", "addStake", "fundPool")
_UNAFFORDABLE = re.compile(r"cannot afford|insufficient funds", re.IGNORECASE)
SETTLE_FUNCTIONS = ("advancePhase", "finalizeRound")
"""Anyone may send these once a phase's deadline passed (``fedledger round settle``)."""
MODEL_FUNCTIONS = ("proposeAggregate", "publishAndOpen", "publishGlobal")
ACTION_TIMEOUT = 300.0
MAX_BALANCE_ADDRESSES = 4096
"""Accounts one GetBalances request may list (a task holds at most 1,024 members at a time)."""

_BLOB_STATUS = {
    BlobTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BlobHashMismatch: grpc.StatusCode.INVALID_ARGUMENT,
    BlobTruncated: grpc.StatusCode.INVALID_ARGUMENT,
    BlobNotFound: grpc.StatusCode.NOT_FOUND,
    BlobCorrupted: grpc.StatusCode.DATA_LOSS,
}


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    if isinstance(exc, GatewayError):
        return exc.code, exc.message
    if isinstance(exc, ChainUnavailable):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    for kind, code in _BLOB_STATUS.items():
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, DuplicateAction):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, RelayFailed):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    revert = as_contract_revert(exc)
    if revert is not None:
        return grpc.StatusCode.FAILED_PRECONDITION, f"the contract refuses it: {revert.describe()}"
    if _UNAFFORDABLE.search(str(exc)):  # the node's own refusal: eth-tester and nodes raise different types
        return grpc.StatusCode.FAILED_PRECONDITION, "the sender cannot pay this transaction's gas and value"
    return None


def rpc(method: Callable[..., T]) -> Callable[..., T]:
    """Answer every refusal with its status and message; log anything unexpected as INTERNAL."""

    @functools.wraps(method)
    def wrapper(self: GatewayService, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except Exception as exc:
            status = _status_of(exc)
            if status is None:
                log.exception("internal error in %s", method.__name__)
                status = (grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
            context.abort(*status)
            raise  # unreachable: abort raises

    return wrapper


def event_to_proto(event: Event, log_entry: Any | None = None) -> pb.Event:
    """A decoded event as a proto message (args as JSON, plus the raw log when known)."""
    message = pb.Event(
        name=event.name,
        args_json=json.dumps(checks.jsonable(event.args), sort_keys=True),
        block_number=event.block_number,
        transaction_hash=bytes(HexBytes(event.transaction_hash)),
        log_index=event.log_index,
    )
    if log_entry is not None:
        message.topics.extend(bytes(t) for t in log_entry["topics"])
        message.data = bytes(log_entry["data"])
    return message


def _split_stream(messages: Iterator[Any], header_field: str) -> tuple[Any, Iterator[bytes]]:
    """First message must be the header; the rest are chunks."""
    first = next(messages, None)
    if first is None or first.WhichOneof("part") != "header":
        raise invalid(f"the stream must start with a {header_field}")
    header = first.header

    def chunks() -> Iterator[bytes]:
        for message in messages:
            if message.WhichOneof("part") != "chunk":
                raise invalid("only one header per stream")
            yield message.chunk

    return header, chunks()


class GatewayService(pb_grpc.GatewayServicer):
    """Implements every RPC of gateway.proto over one task."""

    def __init__(self, ledger: Ledger, blobs: BlobStore, relayer: Relayer) -> None:
        """Serve the task of ``ledger``, storing blobs in ``blobs`` and relaying with ``relayer``."""
        self.ledger = ledger
        self.blobs = blobs
        self.relayer = relayer
        self._abi_contract = Web3().eth.contract(abi=load_artifact("FLTask").abi)
        self._gas_by_transaction: dict[str, int] = {}

    # ---------------------------------------------------------------- task, accounts

    @rpc
    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.TaskInfo:
        """Task parameters and addresses."""
        ledger = self.ledger
        current, pool, global_hash = ledger.run(
            lambda: (ledger.task.current_round(), ledger.task.reward_pool(), ledger.task.global_model_hash())
        )
        return pb.TaskInfo(
            chain_id=ledger.chain_id,
            task_address=ledger.task.address,
            factory_address=ledger.manifest.factory.address,
            relayer_address=ledger.relayer,
            coordinator=ledger.config.coordinator,
            config_json=ledger.config.model_dump_json(),
            current_round=current,
            global_model_hash=global_hash,
            reward_pool_wei=str(pool),
            max_blob_bytes=self.blobs.max_bytes,
            deployment_block=ledger.manifest.block_number,
        )

    @rpc
    def GetAccount(self, request: pb.GetAccountRequest, context: grpc.ServicerContext) -> pb.AccountInfo:
        """Chain nonce, balance and membership of an account."""
        return self._account(checks.parse_address(request.address, "address"))

    @rpc
    def GetParticipant(self, request: pb.GetAccountRequest, context: grpc.ServicerContext) -> pb.AccountInfo:
        """Stake, credited rewards and nonces of a participant."""
        return self._account(checks.parse_address(request.address, "address"))

    @rpc
    def GetBalances(self, request: pb.GetBalancesRequest, context: grpc.ServicerContext) -> pb.BalanceList:
        """Stake and credited balance of each listed account, from the task's events (no call per account)."""
        if len(request.addresses) > MAX_BALANCE_ADDRESSES:
            raise checks.invalid(f"at most {MAX_BALANCE_ADDRESSES} addresses per request, got {len(request.addresses)}")
        addresses = [checks.parse_address(a, "addresses") for a in request.addresses]
        history = self.ledger.history()
        return pb.BalanceList(
            balances=[
                pb.Balance(address=a, stake_wei=str(history.stakes.get(a, 0)), owed_wei=str(history.owed.get(a, 0)))
                for a in addresses
            ],
            block_number=max(history.last_block, 0),
        )

    def _account(self, address: str) -> pb.AccountInfo:
        ledger = self.ledger
        nonce, balance, member = ledger.run(
            lambda: (
                ledger.w3.eth.get_transaction_count(address, "pending"),
                ledger.w3.eth.get_balance(address),
                ledger.task.member(address),
            )
        )
        return pb.AccountInfo(
            address=address,
            chain_nonce=nonce,
            balance_wei=str(balance),
            registered=member.registered,
            exiting=member.exiting,
            exit_ready_at=member.exit_ready_at,
            stake_wei=str(member.stake),
            owed_wei=str(member.owed),
            action_nonce=member.nonce + self.relayer.pending(address, member_actions_only=True),
            member_index=member.index,
        )

    @rpc
    def PrepareTransaction(
        self, request: pb.PrepareTransactionRequest, context: grpc.ServicerContext
    ) -> pb.PreparedTransaction:
        """Nonce, gas and fees for a task transaction the caller signs itself."""
        sender = checks.parse_address(getattr(request, "from"), "from")
        value = checks.parse_uint(request.value_wei or "0", "value_wei")
        ledger = self.ledger
        params = {"from": sender, "to": ledger.task.address, "data": bytes(request.data), "value": value}

        def prepare() -> tuple[int, int, int]:
            # Against the pending block, as the transaction will run: an idle node's latest block
            # can predate a deadline that has passed (``round settle`` would be refused). The
            # embedded chain estimates only against its latest block, which follows the clock.
            block = None if ledger.embedded else "pending"
            estimate = ledger.w3.eth.estimate_gas(params, block)  # type: ignore[arg-type]
            gas = int(estimate * GAS_MARGIN) + 10_000
            base_fee = int(ledger.w3.eth.get_block("latest").get("baseFeePerGas", 0))
            return ledger.w3.eth.get_transaction_count(sender, "pending"), gas, base_fee

        nonce, gas, base_fee = ledger.run(prepare)
        priority = 10**9
        return pb.PreparedTransaction(
            chain_id=ledger.chain_id,
            nonce=nonce,
            gas=gas,
            max_fee_per_gas=str(2 * base_fee + priority),
            max_priority_fee_per_gas=str(priority),
            to=ledger.task.address,
        )

    @rpc
    def SendTransaction(
        self, request: pb.SendTransactionRequest, context: grpc.ServicerContext
    ) -> pb.TransactionResult:
        """Broadcast a participant's own register / addStake / fundPool, or anyone's advancePhase / finalizeRound."""
        call = self._decode_call(request.raw_transaction, PARTICIPANT_FUNCTIONS + SETTLE_FUNCTIONS, False)
        if call.function in SETTLE_FUNCTIONS:
            self.relayer.flush()  # what was acknowledged before lands before the phase moves on
        return self._transaction_result(self._broadcast(call))

    def _decode_call(self, raw: bytes, allowed: tuple[str, ...], coordinator_only: bool) -> _RawCall:
        """Decode a signed raw transaction once and check it calls one of ``allowed`` on the task."""
        sender, fields = checks.decode_raw_transaction(raw, self.ledger.chain_id)
        to = fields.get("to")
        if not to or to_checksum_address(HexBytes(to).to_0x_hex()) != self.ledger.task.address:
            raise checks.denied(f"the gateway only relays transactions to the task {self.ledger.task.address}")
        try:
            function, args = self._abi_contract.decode_function_input(HexBytes(fields.get("data", b"")))
        except ValueError as exc:
            raise checks.denied(f"not a call of the task's {', '.join(allowed)}") from exc
        if function.fn_name not in allowed:
            raise checks.denied(f"{function.fn_name} is not relayed here; expected one of {', '.join(allowed)}")
        if coordinator_only and sender != self.ledger.config.coordinator:
            raise checks.denied(f"{function.fn_name} must be signed by the coordinator, not {sender}")
        return _RawCall(raw, sender, fields, dict(args), function.fn_name)

    def _send_raw(self, raw: bytes, allowed: tuple[str, ...], coordinator_only: bool) -> Sent:
        return self._broadcast(self._decode_call(raw, allowed, coordinator_only))

    def _broadcast(self, tx: _RawCall) -> Sent:
        ledger = self.ledger
        call = {
            "from": tx.sender,
            "to": ledger.task.address,
            "data": tx.fields.get("data", b""),
            "value": tx.fields["value"],
        }

        def send() -> Sent:
            # Against the pending block: the clock the transaction will be mined with (an idle dev
            # chain's latest block can be older than a deadline that has passed).
            ledger.w3.eth.call(call, "pending")  # type: ignore[arg-type]  # surfaces a revert before gas is spent
            tx_hash = ledger.w3.eth.send_raw_transaction(tx.raw)
            receipt = ledger.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
            if receipt["status"] != 1:
                raise checks.precondition(f"transaction 0x{bytes(tx_hash).hex()} reverted")
            return Sent(receipt, ledger.task.decode_receipt(receipt))

        return ledger.send(send)

    def _transaction_result(self, sent: Sent) -> pb.TransactionResult:
        logs = {int(entry["logIndex"]): entry for entry in sent.receipt["logs"]}
        result = pb.TransactionResult(
            transaction_hash=bytes(sent.receipt["transactionHash"]),
            block_number=int(sent.receipt["blockNumber"]),
            gas_used=sent.gas_used,
            events=[event_to_proto(e, logs.get(e.log_index)) for e in sent.events],
        )
        if sent.named("RoundOpened"):
            result.opened.CopyFrom(self._roles(sent))
        return result

    def _roles(self, sent: Sent) -> pb.RoundRoles:
        """The roles of the round ``sent`` opened, its accounts resolved from the task's events."""
        opened = sent.named("RoundOpened")[0].args
        committee = self.ledger.committee(int(opened["round"]))
        return pb.RoundRoles(
            round=opened["round"],
            seed=bytes(opened["seed"]),
            proposers=list(committee.proposers),
            voters=list(committee.voters),
            deadline=opened["deadline"],
            transaction_hash=bytes(sent.receipt["transactionHash"]),
            reviewers=opened["reviewers"],
        )

    # ------------------------------------------------------------ relayed actions

    def _check_relayable(self, signed: td.SignedAction) -> None:
        """Queue checks every relayed action passes before anything is stored.

        A membership action is also checked for its deadline and nonce; round actions have
        neither (their round and an acted-bit on chain stop replays).
        """
        ledger = self.ledger
        if self.relayer.is_queued(signed.action.name, signed.signer):
            raise checks.duplicate(f"{signed.signer} already has a {signed.action.name} queued")
        if signed.action.round_action:
            return
        checks.check_deadline(signed.message["deadline"], ledger.chain_time())
        chain_nonce = ledger.run(lambda: ledger.task.nonce(signed.signer))
        pending = self.relayer.pending(signed.signer, member_actions_only=True)
        checks.check_nonce(signed.signer, signed.message["nonce"], chain_nonce + pending)

    def _relay(self, signed: td.SignedAction, remaining: int | None, wait: bool = True) -> Outcome | None:
        """Queue a checked action and (unless ``wait`` is False) wait for the batch that carries it."""
        future = self.relayer.enqueue(signed, remaining)
        return future.result(timeout=ACTION_TIMEOUT) if wait else None

    def _seen(self, signed: td.SignedAction, wait: bool, blob_hash: bytes = b"") -> pb.ActionResult | None:
        """The answer to an action received before (a retry): its recorded or pending outcome, never a second relay."""
        future = self.relayer.known(signed)
        if future is None:
            return None
        if not wait and not future.done():
            return self._action_result(None, blob_hash)
        return self._action_result(future.result(timeout=ACTION_TIMEOUT), blob_hash)

    @staticmethod
    def _action_result(outcome: Outcome | None, blob_hash: bytes = b"") -> pb.ActionResult:
        if outcome is None:
            return pb.ActionResult(status=pb.QUEUED, blob_hash=blob_hash)
        return pb.ActionResult(
            status=pb.INCLUDED if outcome.included else pb.REJECTED,
            transaction_hash=outcome.transaction_hash,
            block_number=outcome.block_number,
            reason=outcome.reason,
            batch_size=outcome.batch_size,
            blob_hash=blob_hash,
        )

    def _parse_and_authenticate(self, request: pb.SignedAction, allowed: tuple[str, ...]) -> td.SignedAction:
        signed = checks.parse_signed_action(request.action, request.message_json, request.signature, allowed)
        checks.check_signature(signed, self.ledger.domain)
        return signed

    @rpc
    def SubmitUpdate(
        self, request_iterator: Iterator[pb.SubmitUpdateMessage], context: grpc.ServicerContext
    ) -> pb.ActionResult:
        """Check the signed commitment, store the streamed bytes, queue the commitment, report its fate."""
        header, chunks = _split_stream(request_iterator, "SubmitUpdateHeader")
        signed = self._parse_and_authenticate(header.commitment, ("CommitUpdate",))
        wait = not header.commitment.no_wait
        if (seen := self._seen(signed, wait, signed.message["updateHash"])) is not None:
            return seen  # its bytes were stored before it was logged
        if header.size > self.blobs.max_bytes:
            raise BlobTooLarge(f"update of {header.size} bytes exceeds the limit of {self.blobs.max_bytes}")
        self._check_relayable(signed)
        remaining = checks.check_commit_update(self.ledger, signed)
        blob = self.blobs.put(chunks, expected_hash=signed.message["updateHash"], size=header.size)
        return self._action_result(self._relay(signed, remaining, wait), blob.hash)

    @rpc
    def CommitVote(self, request: pb.SignedAction, context: grpc.ServicerContext) -> pb.ActionResult:
        """Queue a signed vote commitment and report its fate."""
        signed = self._parse_and_authenticate(request, ("CommitVote",))
        if (seen := self._seen(signed, not request.no_wait)) is not None:
            return seen
        self._check_relayable(signed)
        remaining = checks.check_commit_vote(self.ledger, signed)
        return self._action_result(self._relay(signed, remaining, not request.no_wait))

    @rpc
    def RevealVote(self, request: pb.SignedAction, context: grpc.ServicerContext) -> pb.ActionResult:
        """Queue a signed reveal (checked against the commitment) and report its fate."""
        signed = self._parse_and_authenticate(request, ("RevealVote",))
        if (seen := self._seen(signed, not request.no_wait)) is not None:
            return seen
        self._check_relayable(signed)
        remaining = checks.check_reveal_vote(self.ledger, signed)
        return self._action_result(self._relay(signed, remaining, not request.no_wait))

    @rpc
    def RelayMemberAction(self, request: pb.SignedAction, context: grpc.ServicerContext) -> pb.ActionResult:
        """Queue a signed exit request, exit completion or withdrawal."""
        signed = self._parse_and_authenticate(request, ("RequestExit", "CompleteExit", "Withdraw"))
        if (seen := self._seen(signed, not request.no_wait)) is not None:
            return seen
        self._check_relayable(signed)
        checks.check_member_action(self.ledger, signed)
        return self._action_result(self._relay(signed, None, not request.no_wait))

    @rpc
    def FetchBlob(self, request: pb.FetchBlobRequest, context: grpc.ServicerContext) -> Iterator[pb.BlobChunk]:
        """Stream a stored blob, verified before the first byte."""
        if len(request.hash) != 32:
            raise invalid(f"a blob hash has 32 bytes, got {len(request.hash)}")
        size = self.blobs.size(request.hash)
        chunks = self.blobs.read(request.hash)  # verifies first: corruption aborts with DATA_LOSS
        return self._stream_chunks(chunks, size)

    @staticmethod
    def _stream_chunks(chunks: Iterator[bytes], size: int) -> Iterator[pb.BlobChunk]:
        first = True
        for chunk in chunks:
            yield pb.BlobChunk(data=chunk, size=size if first else 0)
            first = False
        if first:
            yield pb.BlobChunk(data=b"", size=0)

    # ----------------------------------------------------------------- coordinator

    @rpc
    def OpenRound(self, request: pb.SendTransactionRequest, context: grpc.ServicerContext) -> pb.RoundRoles:
        """Broadcast the coordinator's openRound transaction and return the drawn roles."""
        sent = self._send_raw(request.raw_transaction, ("openRound",), coordinator_only=True)
        return self._roles(sent)

    @rpc
    def ProposeModel(
        self, request_iterator: Iterator[pb.ProposeModelMessage], context: grpc.ServicerContext
    ) -> pb.TransactionResult:
        """Store the model, then broadcast the coordinator's proposeAggregate / publishGlobal naming it."""
        header, chunks = _split_stream(request_iterator, "ProposeModelHeader")
        tx = self._decode_call(header.raw_transaction, MODEL_FUNCTIONS, coordinator_only=True)
        model_hash = bytes(tx.args.get("candidateHash") or tx.args.get("modelHash"))
        self.blobs.put(chunks, expected_hash=model_hash, size=header.size)
        self.relayer.flush("CommitUpdate")  # a candidate closes training: relay late commitments first
        return self._transaction_result(self._broadcast(tx))

    @rpc
    def StoreBlob(self, request_iterator: Iterator[pb.StoreBlobMessage], context: grpc.ServicerContext) -> pb.BlobInfo:
        """Store a blob the coordinator signed for (e.g. the initial model)."""
        header, chunks = _split_stream(request_iterator, "StoreBlobHeader")
        command = header.command
        message = checks.check_coordinator_command(
            self.ledger,
            command.command,
            command.round,
            command.subject,
            command.deadline,
            command.signature,
            "storeBlob",
        )
        blob = self.blobs.put(chunks, expected_hash=message["subject"], size=header.size)
        return pb.BlobInfo(hash=blob.hash, size=blob.size)

    def _command(self, request: pb.CoordinatorCommand, expected: str) -> int:
        message = checks.check_coordinator_command(
            self.ledger,
            request.command,
            request.round,
            request.subject,
            request.deadline,
            request.signature,
            expected,
        )
        return int(message["round"])

    @rpc
    def AdvancePhase(self, request: pb.CoordinatorCommand, context: grpc.ServicerContext) -> pb.TransactionResult:
        """Relay what is queued, then advance the round with the relayer's key."""
        round_ = self._command(request, "advancePhase")
        self.relayer.flush()
        ledger = self.ledger
        return self._transaction_result(ledger.send(lambda: ledger.task.advance_phase(ledger.relayer, round_)))

    @rpc
    def FinalizeRound(self, request: pb.CoordinatorCommand, context: grpc.ServicerContext) -> pb.TransactionResult:
        """Relay queued reveals, then finalize the round with the relayer's key."""
        round_ = self._command(request, "finalizeRound")
        self.relayer.flush()
        ledger = self.ledger
        return self._transaction_result(ledger.send(lambda: ledger.task.finalize_round(ledger.relayer, round_)))

    @rpc
    def FlushQueue(self, request: pb.CoordinatorCommand, context: grpc.ServicerContext) -> pb.FlushResult:
        """Relay everything queued now and wait for it."""
        self._command(request, "flush")
        return pb.FlushResult(actions=self.relayer.flush())

    # ---------------------------------------------------------------------- queries

    @rpc
    def GetRound(self, request: pb.GetRoundRequest, context: grpc.ServicerContext) -> pb.RoundState:
        """Phase, roles, commitments, votes and outcomes of a round (0: the current one).

        Read from the events: the contract keeps only the current round, whose phase and deadline
        come from its view.
        """
        ledger = self.ledger
        current = ledger.current_round()
        round_ = request.round or current
        record = ledger.round_history(round_) if round_ else None
        if record is None:
            if round_ > current:
                raise checks.GatewayError(grpc.StatusCode.NOT_FOUND, f"round {round_} has not been opened")
            return pb.RoundState(round=round_, phase=Phase.NONE.name, chain_time=ledger.chain_time())
        state = self._round_state(record, round_ == current)
        if not request.brief:
            self._round_seats(state, record)
        if request.gas:
            state.gas_used = ledger.run(lambda: self._round_gas(record))
        return state

    def _round_state(self, record: RoundHistory, is_current: bool) -> pb.RoundState:
        ledger = self.ledger
        state = pb.RoundState(
            round=record.round,
            phase=record.phase.name,
            deadline=record.deadline,
            seed=record.seed,
            candidate=record.candidate or b"",
            global_model_hash=record.global_model_hash or b"",
            global_published=record.global_model_hash is not None,
            outcomes=str(record.outcomes),
            decided=str(record.decided),
            reward_wei=str(record.paid),
            queued_actions=self.relayer.pending(),
            chain_time=ledger.chain_time(),
            num_updates=len(record.updates),
            num_vote_commits=len(record.vote_commitments),
            num_reveals=len(record.reveals),
            reviewers=record.reviewers,
        )
        if is_current:  # the view is the authority on the phase of the round in progress
            info = ledger.round_info()
            if info.round == record.round:
                state.phase, state.deadline = info.phase.name, info.deadline
        return state

    def _round_seats(self, state: pb.RoundState, record: RoundHistory) -> None:
        mode = self.ledger.config.vote_mode
        per_update = mode is VoteMode.PER_UPDATE
        for i, address in enumerate(record.proposers):
            update_hash, examples = record.updates.get(address, (b"", 0))
            item = i if per_update else 0
            state.proposers.append(
                pb.ProposerState(
                    address=address,
                    update_hash=update_hash,
                    num_examples=examples,
                    committed=address in record.updates,
                    accepted=record.finalized and address in record.updates and bool(record.outcomes >> item & 1),
                    tally=str(record.tallies[item]) if record.finalized and item < len(record.tallies) else "0",
                )
            )
        items = record.items(mode)
        for j, address in enumerate(record.voters):
            bits, _salt = record.reveals.get(address, (0, b""))
            state.voters.append(
                pb.VoterState(
                    address=address,
                    commitment=record.vote_commitments.get(address, b""),
                    revealed=address in record.reveals,
                    bits=str(bits),
                    items=items[j],
                )
            )

    def _round_gas(self, record: RoundHistory) -> int:
        """Gas of the transactions that emitted events of the round (each counted once).

        Receipts never change, so each transaction's gas is read from the node once.
        """
        w3 = self.ledger.w3
        for tx in record.transactions:
            if tx not in self._gas_by_transaction:
                self._gas_by_transaction[tx] = int(w3.eth.get_transaction_receipt(tx)["gasUsed"])  # type: ignore[arg-type]
        return sum(self._gas_by_transaction[tx] for tx in record.transactions)

    @rpc
    def GetEvents(self, request: pb.GetEventsRequest, context: grpc.ServicerContext) -> pb.EventList:
        """Decoded task events, optionally of one round and/or one participant."""
        participant = checks.parse_address(request.participant, "participant") if request.participant else None
        names = set(request.names) or None
        ledger = self.ledger

        def read() -> list[tuple[Event, Any]]:
            logs = ledger.w3.eth.get_logs(
                {
                    "address": ledger.task.address,
                    "fromBlock": ledger.manifest.block_number,
                    "toBlock": "latest",
                }
            )
            return [(e, entry) for entry in logs if (e := ledger.task.decode_log(entry)) is not None]

        selected = [
            event_to_proto(event, entry)
            for event, entry in ledger.run(read)
            if (names is None or event.name in names)
            and (not request.round or event.args.get("round") == request.round)
            and (participant is None or participant in _addresses_in(event.args))
        ]
        return pb.EventList(events=selected)


def _addresses_in(args: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for value in args.values():
        values = value if isinstance(value, list | tuple) else [value]
        found.update(v for v in values if isinstance(v, str) and v.startswith("0x") and len(v) == 42)
    return found
