"""Off-chain checks of everything a client sends, each failure mapped to one gRPC status.

The gateway refuses bad input before it costs gas or queue space; the contract re-checks
everything anyway. The status of each failure is listed in docs/gateway.md.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import is_address, to_checksum_address
from hexbytes import HexBytes

from fedledger.contracts import typed_data as td
from fedledger.contracts.types import Phase, Role, RoundInfo, VoteMode, vote_commitment, vote_problem

if TYPE_CHECKING:  # the client imports this module's message helpers without the ledger (eth-tester, web3 node code)
    from .ledger import Ledger


class GatewayError(Exception):
    """A request the gateway refuses, with the gRPC status to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        """Refuse with ``code`` and a message saying what is wrong."""
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> GatewayError:
    """INVALID_ARGUMENT: malformed input."""
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message)


def precondition(message: str) -> GatewayError:
    """FAILED_PRECONDITION: well-formed, but not now (wrong round or phase, expired, reverts)."""
    return GatewayError(grpc.StatusCode.FAILED_PRECONDITION, message)


def denied(message: str) -> GatewayError:
    """PERMISSION_DENIED: the signer may not do this."""
    return GatewayError(grpc.StatusCode.PERMISSION_DENIED, message)


def duplicate(message: str) -> GatewayError:
    """ALREADY_EXISTS: done (or queued) already, or a replayed nonce."""
    return GatewayError(grpc.StatusCode.ALREADY_EXISTS, message)


# ------------------------------------------------------------------------ parsing


def parse_address(value: Any, what: str) -> str:
    """A checksummed address, or INVALID_ARGUMENT."""
    if not isinstance(value, str) or not is_address(value):
        raise invalid(f"{what} is not an address: {value!r}")
    return to_checksum_address(value)


def parse_bytes32(value: Any, what: str) -> bytes:
    """32 bytes from 0x-hex, or INVALID_ARGUMENT."""
    try:
        raw = bytes(HexBytes(value)) if isinstance(value, str) else bytes(value)
    except (TypeError, ValueError) as exc:
        raise invalid(f"{what} is not hex: {value!r}") from exc
    if len(raw) != 32:
        raise invalid(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def parse_uint(value: Any, what: str, bits: int = 256) -> int:
    """A non-negative integer (number or decimal string) below 2**bits, or INVALID_ARGUMENT."""
    if isinstance(value, bool):
        raise invalid(f"{what} must be an integer")
    try:
        number = int(value, 10) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise invalid(f"{what} must be an integer, got {value!r}") from exc
    if isinstance(value, float) or not 0 <= number < 2**bits:
        raise invalid(f"{what} out of range: {value!r}")
    return number


def parse_signed_action(action: str, message_json: str, signature: bytes, allowed: tuple[str, ...]) -> td.SignedAction:
    """Turn a SignedAction request into a typed action; checks shape only, not the signature."""
    if action not in allowed:
        raise invalid(f"action {action!r} is not accepted here; expected one of {', '.join(allowed)}")
    action_type = td.ACTION_TYPES[action]
    try:
        raw = json.loads(message_json)
    except json.JSONDecodeError as exc:
        raise invalid(f"message_json is not JSON: {exc.msg}") from exc
    if not isinstance(raw, dict) or set(raw) != set(action_type.field_names):
        fields = ", ".join(action_type.field_names)
        raise invalid(f"{action} needs exactly the fields {fields}")
    message: dict[str, Any] = {}
    for name, kind in action_type.fields:
        if kind == "address":
            message[name] = parse_address(raw[name], name)
        elif kind == "bytes32":
            message[name] = parse_bytes32(raw[name], name)
        else:
            message[name] = parse_uint(raw[name], name)
    if len(signature) != 65:
        raise invalid(f"a signature has 65 bytes, got {len(signature)}")
    if signature[64] not in (27, 28):
        raise invalid(f"signature v must be 27 or 28, got {signature[64]}")
    return td.SignedAction(action_type, message, bytes(signature))


def jsonable(value: Any) -> Any:
    """``value`` with bytes as 0x-hex and integers JSON cannot hold exactly (|n| >= 2**53) as strings."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    return value


def message_to_json(message: dict[str, Any]) -> str:
    """Encode an action message for a SignedAction request (see :func:`jsonable`)."""
    return json.dumps(jsonable(message), sort_keys=True)


# ------------------------------------------------------------------ signatures


def check_signature(signed: td.SignedAction, domain: td.Domain) -> None:
    """INVALID_ARGUMENT for an unusable signature, UNAUTHENTICATED for one by another key."""
    try:
        recovered = td.recover_signer(signed, domain)
    except Exception as exc:
        raise invalid(f"malformed signature: {exc}") from exc
    if recovered != signed.signer:
        raise GatewayError(
            grpc.StatusCode.UNAUTHENTICATED,
            f"signature is by {recovered}, not by {signed.action.signer_field} {signed.signer}",
        )


def check_deadline(deadline: int, chain_time: int) -> None:
    """FAILED_PRECONDITION when the signature expires before the next block."""
    if deadline <= chain_time:
        raise precondition(f"signature expired at {deadline} (chain time {chain_time})")


def check_nonce(signer: str, nonce: int, expected: int) -> None:
    """ALREADY_EXISTS for a used (replayed) nonce, FAILED_PRECONDITION for a gap."""
    if nonce < expected:
        raise duplicate(f"nonce {nonce} of {signer} was already used (replay?); the next one is {expected}")
    if nonce > expected:
        raise precondition(f"nonce {nonce} of {signer} is ahead; the next one is {expected}")


def check_coordinator_command(
    ledger: Ledger, command: str, round_: int, subject: bytes, deadline: int, signature: bytes, expected: str
) -> dict[str, Any]:
    """Check that the task's coordinator signed this command and that it has not expired."""
    if command != expected:
        raise invalid(f"this RPC takes the command {expected!r}, got {command!r}")
    if len(signature) != 65:
        raise invalid(f"a signature has 65 bytes, got {len(signature)}")
    message = td.coordinator_command_message(command, round_, parse_bytes32(subject or b"\0" * 32, "subject"), deadline)
    try:
        signer = td.recover_command_signer(message, signature, ledger.domain)
    except Exception as exc:
        raise invalid(f"malformed signature: {exc}") from exc
    if signer != ledger.config.coordinator:
        raise GatewayError(grpc.StatusCode.UNAUTHENTICATED, f"command signed by {signer}, not the coordinator")
    check_deadline(deadline, ledger.chain_time())
    return message


# ----------------------------------------------------------------- round rules


def check_round_phase(ledger: Ledger, round_: int, phase: Phase) -> RoundInfo:
    """FAILED_PRECONDITION unless ``round_`` is the current round and in ``phase``; return its state."""
    current = ledger.current_round()
    if round_ != current or round_ == 0:
        raise precondition(f"round {round_} is not the current round ({current})")
    info = ledger.round_info()
    if info.round != round_:  # the round moved on between the two reads
        raise precondition(f"round {round_} is not the current round ({info.round})")
    if info.phase is not phase:
        raise precondition(f"round {round_} is in phase {info.phase.name}, not {phase.name}")
    return info


def check_role(ledger: Ledger, round_: int, signer: str, role: Role) -> int:
    """PERMISSION_DENIED unless ``signer`` holds ``role`` in ``round_``; return its seat."""
    committee = ledger.committee(round_)
    holders = committee.proposers if role is Role.PROPOSER else committee.voters
    if signer not in holders:
        member = ledger.run(lambda: ledger.task.member(signer)).registered
        who = "is not a member of the task" if not member else f"is not a {role.name.lower()} of round {round_}"
        raise denied(f"{signer} {who}")
    return holders.index(signer)


def check_commit_update(ledger: Ledger, signed: td.SignedAction) -> int:
    """Everything ``commitUpdate`` will check, off-chain; returns how many proposers still have to commit."""
    m = signed.message
    if m["updateHash"] == b"\0" * 32:
        raise invalid("updateHash must not be zero")
    if not 0 < m["numExamples"] < 2**64:
        raise invalid(f"numExamples must be between 1 and 2^64-1, got {m['numExamples']}")
    info = check_round_phase(ledger, m["round"], Phase.TRAINING)
    seat = check_role(ledger, m["round"], signed.signer, Role.PROPOSER)
    if info.committed_mask >> seat & 1:
        raise duplicate(f"{signed.signer} already committed an update in round {m['round']}")
    return info.num_proposers - info.num_updates


def check_commit_vote(ledger: Ledger, signed: td.SignedAction) -> int:
    """Everything ``commitVote`` will check, off-chain; returns how many voters still have to commit."""
    m = signed.message
    if m["commitment"] == b"\0" * 32:
        raise invalid("commitment must not be zero")
    info = check_round_phase(ledger, m["round"], Phase.VOTING)
    seat = check_role(ledger, m["round"], signed.signer, Role.VOTER)
    if info.vote_committed_mask >> seat & 1:
        raise duplicate(f"{signed.signer} already committed a vote in round {m['round']}")
    return info.num_voters - info.num_vote_commits


def check_reveal_vote(ledger: Ledger, signed: td.SignedAction) -> int:
    """Everything ``revealVote`` will check, off-chain; returns how many committed voters still have to reveal."""
    m = signed.message
    round_ = m["round"]
    info = check_round_phase(ledger, round_, Phase.REVEALING)
    seat = check_role(ledger, round_, signed.signer, Role.VOTER)
    if not info.vote_committed_mask >> seat & 1:
        raise precondition(f"{signed.signer} committed no vote in round {round_}")
    if info.revealed_mask >> seat & 1:
        raise duplicate(f"{signed.signer} already revealed its vote in round {round_}")
    record = ledger.round_history(round_)
    commitment = record.vote_commitments.get(signed.signer) if record is not None else None
    if commitment is None:
        raise GatewayError(grpc.StatusCode.UNAVAILABLE, f"the vote commitment of {signed.signer} is not indexed yet")
    items = len(record.voter_items(signed.signer, ledger.config.vote_mode)) if record is not None else 0
    problem = vote_problem(m["bits"], items)
    if problem:
        raise invalid(problem)
    candidate = info.candidate if ledger.config.vote_mode is VoteMode.AGGREGATE else b"\0" * 32
    if vote_commitment(ledger.task.address, round_, candidate, m["bits"], m["salt"], signed.signer) != commitment:
        raise invalid("bits and salt do not match the committed vote")
    return info.num_vote_commits - info.num_reveals


def check_member_action(ledger: Ledger, signed: td.SignedAction) -> None:
    """PERMISSION_DENIED for non-members (withdraw is open to former members with a balance)."""
    info = ledger.run(lambda: ledger.task.member(signed.signer))
    if signed.action is td.WITHDRAW:
        if info.owed == 0:
            raise precondition(f"{signed.signer} has nothing to withdraw")
    elif not info.registered:
        raise denied(f"{signed.signer} is not a member of the task")


# --------------------------------------------------------------- raw transactions


def decode_raw_transaction(raw: bytes, chain_id: int) -> tuple[str, dict[str, Any]]:
    """Recover the sender and fields of a signed raw transaction, or INVALID_ARGUMENT."""
    if not raw:
        raise invalid("raw_transaction is empty")
    try:
        sender = Account.recover_transaction(raw)
        fields = _transaction_fields(raw)
    except Exception as exc:
        raise invalid(f"not a signed transaction: {exc}") from exc
    if fields.get("chainId") not in (None, chain_id):
        raise invalid(f"transaction is for chain {fields['chainId']}, this task is on chain {chain_id}")
    return to_checksum_address(sender), fields


def _transaction_fields(raw: bytes) -> dict[str, Any]:
    if raw[0] <= 0x7F:  # EIP-2718 typed transaction
        return dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict())
    from eth_account._utils.legacy_transactions import Transaction

    legacy = Transaction.from_bytes(raw)
    return {"to": legacy.to, "data": legacy.data, "value": legacy.value, "chainId": None}
