"""EIP-712 typed data of the relayed participant actions: one definition for signer and verifier.

The client signs with :func:`sign_action`; the gateway checks with :func:`recover_signer` before
relaying; the contract recomputes the same struct hashes (a test checks every type hash against
the contract's ``*_TYPEHASH`` constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

DOMAIN_NAME = "FLTask"
DOMAIN_VERSION = "2"
"""FLTask v2: round actions carry no nonce and no deadline (the round and an acted-bit stop replays)."""

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


@dataclass(frozen=True)
class ActionType:
    """One signed action: its EIP-712 struct and the batch function that relays it."""

    name: str
    fields: tuple[tuple[str, str], ...]
    batch_function: str
    signer_field: str
    round_action: bool = False
    """A round action: its request also carries the signer's seat (an unsigned hint the contract checks)."""

    @property
    def type_string(self) -> str:
        """``Name(type1 field1,...)`` as hashed by EIP-712."""
        return f"{self.name}({','.join(f'{t} {n}' for n, t in self.fields)})"

    @property
    def type_hash(self) -> bytes:
        """keccak256 of :attr:`type_string`."""
        return keccak(text=self.type_string)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Field names in struct order."""
        return tuple(n for n, _ in self.fields)


def _member_action(name: str, batch_function: str) -> ActionType:
    return ActionType(
        name,
        (("member", "address"), ("nonce", "uint256"), ("deadline", "uint256")),
        batch_function,
        "member",
    )


COMMIT_UPDATE = ActionType(
    "CommitUpdate",
    (("proposer", "address"), ("round", "uint256"), ("updateHash", "bytes32"), ("numExamples", "uint256")),
    "commitUpdatesBySig",
    "proposer",
    round_action=True,
)
COMMIT_VOTE = ActionType(
    "CommitVote",
    (("voter", "address"), ("round", "uint256"), ("commitment", "bytes32")),
    "commitVotesBySig",
    "voter",
    round_action=True,
)
REVEAL_VOTE = ActionType(
    "RevealVote",
    (("voter", "address"), ("round", "uint256"), ("bits", "uint256"), ("salt", "bytes32")),
    "revealVotesBySig",
    "voter",
    round_action=True,
)
REQUEST_EXIT = _member_action("RequestExit", "requestExitsBySig")
COMPLETE_EXIT = _member_action("CompleteExit", "completeExitsBySig")
WITHDRAW = _member_action("Withdraw", "withdrawBySig")

CANARY = ActionType(
    "Canary",
    (("proposer", "address"), ("round", "uint256"), ("preimage", "bytes32")),
    "declareCanary",
    "proposer",
)
"""The coordinator's countersignature of a canary declaration (contracts/canary.py); not relayed in batches."""

ACTION_TYPES: dict[str, ActionType] = {
    a.name: a for a in (COMMIT_UPDATE, COMMIT_VOTE, REVEAL_VOTE, REQUEST_EXIT, COMPLETE_EXIT, WITHDRAW)
}


@dataclass(frozen=True)
class Domain:
    """The EIP-712 domain of one task contract on one chain."""

    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        """The domain as EIP-712 JSON."""
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


@dataclass(frozen=True)
class SignedAction:
    """A signed action ready to relay: message fields by EIP-712 name plus the signature."""

    action: ActionType
    message: dict[str, Any]
    signature: bytes

    @property
    def signer(self) -> str:
        """The account the action claims to be signed by."""
        return to_checksum_address(self.message[self.action.signer_field])

    def as_request(self, seat: int | None = None) -> tuple[Any, ...]:
        """The struct tuple the batch function takes: fields in order, the seat (round actions), r, vs.

        ``seat`` is the signer's position among the round's proposers (CommitUpdate) or voters
        (CommitVote, RevealVote); the contract checks it against the committee.
        """
        fields = tuple(self.message[n] for n in self.action.field_names)
        r, vs = compact_signature(self.signature)
        if self.action.round_action:
            if seat is None:
                raise ValueError(f"a {self.action.name} request needs the signer's seat")
            return (*fields, seat, r, vs)
        return (*fields, r, vs)


def compact_signature(signature: bytes) -> tuple[bytes, bytes]:
    """(r, vs) of a 65-byte (r, s, v) signature: EIP-2098's compact form, v folded into the top bit of s."""
    if len(signature) != 65:
        raise ValueError(f"a signature has 65 bytes, got {len(signature)}")
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    if v not in (27, 28):
        raise ValueError(f"signature v must be 27 or 28, got {v}")
    return r, (s | (v - 27) << 255).to_bytes(32, "big")


def typed_data(action: ActionType, message: dict[str, Any], domain: Domain) -> dict[str, Any]:
    """The full EIP-712 JSON of ``message`` (as ``eth_signTypedData_v4`` takes it)."""
    missing = set(action.field_names) ^ set(message)
    if missing:
        raise ValueError(f"{action.name}: fields do not match, difference {sorted(missing)}")
    return {
        "types": {
            "EIP712Domain": _DOMAIN_FIELDS,
            action.name: [{"name": n, "type": t} for n, t in action.fields],
        },
        "primaryType": action.name,
        "domain": domain.as_dict(),
        "message": dict(message),
    }


def sign_action(account: LocalAccount, action: ActionType, message: dict[str, Any], domain: Domain) -> SignedAction:
    """Sign ``message`` as ``account``; the message's signer field must be that account."""
    signed = account.sign_message(encode_typed_data(full_message=typed_data(action, message, domain)))
    result = SignedAction(action, dict(message), bytes(signed.signature))
    if result.signer != account.address:
        raise ValueError(f"{action.name}: {action.signer_field} is {result.signer}, not the signing account")
    return result


def recover_signer(signed: SignedAction, domain: Domain) -> str:
    """Return the address that actually made ``signed.signature``."""
    encoded = encode_typed_data(full_message=typed_data(signed.action, signed.message, domain))
    return str(Account.recover_message(encoded, signature=signed.signature))


def verify(signed: SignedAction, domain: Domain) -> bool:
    """True when the signature was made by the account named in the message."""
    try:
        return recover_signer(signed, domain) == signed.signer
    except Exception:
        return False


def sign_canary(coordinator: LocalAccount, proposer: str, round_: int, preimage: bytes, domain: Domain) -> bytes:
    """The coordinator's compact signature (r, vs: 64 bytes) of ``proposer``'s canary declaration in ``round_``."""
    message = {"proposer": to_checksum_address(proposer), "round": round_, "preimage": preimage}
    signed = coordinator.sign_message(encode_typed_data(full_message=typed_data(CANARY, message, domain)))
    r, vs = compact_signature(bytes(signed.signature))
    return r + vs


def commit_update_message(proposer: str, round_: int, update_hash: bytes, num_examples: int) -> dict[str, Any]:
    """Message of a :data:`COMMIT_UPDATE`."""
    return {
        "proposer": to_checksum_address(proposer),
        "round": round_,
        "updateHash": bytes(update_hash),
        "numExamples": num_examples,
    }


def commit_vote_message(voter: str, round_: int, commitment: bytes) -> dict[str, Any]:
    """Message of a :data:`COMMIT_VOTE`."""
    return {"voter": to_checksum_address(voter), "round": round_, "commitment": bytes(commitment)}


def reveal_vote_message(voter: str, round_: int, bits: int, salt: bytes) -> dict[str, Any]:
    """Message of a :data:`REVEAL_VOTE`."""
    return {"voter": to_checksum_address(voter), "round": round_, "bits": bits, "salt": bytes(salt)}


VOTE_SALT = ActionType("VoteSalt", (("voter", "address"), ("round", "uint256")), "", "voter")
"""Never sent anywhere: a voter's salt for a round is keccak256 of its own signature of this struct.

Only the key's holder can make it (so the commitment still hides the vote until the reveal),
and ECDSA signatures here are deterministic (RFC 6979), so the same voter and round give the
same salt: a seeded run is the same to the gas, and a voter that restarts between its commit
and its reveal can make its salt again.
"""


def vote_salt(account: LocalAccount, round_: int, domain: Domain) -> bytes:
    """The salt ``account`` hides its vote of round ``round_`` with, on the task of ``domain``."""
    message = {"voter": to_checksum_address(account.address), "round": round_}
    return keccak(sign_action(account, VOTE_SALT, message, domain).signature)


def member_message(member: str, nonce: int, deadline: int) -> dict[str, Any]:
    """Message of :data:`REQUEST_EXIT`, :data:`COMPLETE_EXIT` or :data:`WITHDRAW`."""
    return {"member": to_checksum_address(member), "nonce": nonce, "deadline": deadline}


COORDINATOR_COMMAND = ActionType(
    "CoordinatorCommand",
    (("command", "string"), ("round", "uint256"), ("subject", "bytes32"), ("deadline", "uint256")),
    "",
    "",
)
"""Off-chain authorisation of a coordinator request to the gateway (advance, finalize, store a blob).

The contract never sees it: the gateway checks that the task's coordinator signed it over the
task's domain before acting with its own relayer key.
"""

COORDINATOR_COMMANDS = ("advancePhase", "finalizeRound", "storeBlob", "flush")


def coordinator_command_message(command: str, round_: int, subject: bytes, deadline: int) -> dict[str, Any]:
    """Message of a :data:`COORDINATOR_COMMAND`; ``subject`` is a blob hash or 32 zero bytes."""
    if command not in COORDINATOR_COMMANDS:
        raise ValueError(f"unknown coordinator command {command!r}; expected one of {COORDINATOR_COMMANDS}")
    return {"command": command, "round": round_, "subject": bytes(subject), "deadline": deadline}


def sign_coordinator_command(account: LocalAccount, message: dict[str, Any], domain: Domain) -> bytes:
    """The coordinator's signature over a command."""
    encoded = encode_typed_data(full_message=typed_data(COORDINATOR_COMMAND, message, domain))
    return bytes(account.sign_message(encoded).signature)


def recover_command_signer(message: dict[str, Any], signature: bytes, domain: Domain) -> str:
    """The address that signed a coordinator command."""
    encoded = encode_typed_data(full_message=typed_data(COORDINATOR_COMMAND, message, domain))
    return str(Account.recover_message(encoded, signature=signature))


NODE_BINDING = ActionType(
    "NodeBinding",
    (("node", "address"), ("nodeId", "uint256"), ("challenge", "bytes32")),
    "",
    "node",
)
"""A Flower node's proof that it holds an address: it signs the coordinator's fresh challenge
together with its Flower node id, over the task's domain. Checked by the coordinator only."""


def node_binding_message(node: str, node_id: int, challenge: bytes) -> dict[str, Any]:
    """Message of a :data:`NODE_BINDING`."""
    return {"node": to_checksum_address(node), "nodeId": node_id, "challenge": bytes(challenge)}
