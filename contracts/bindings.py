"""Typed web3.py bindings of the governance contracts.

Transactions are sent from an address the node (or a ``SignAndSendRawMiddlewareBuilder``
middleware) can sign for. Every revert, whether found while estimating gas or in a mined
receipt, surfaces as :class:`~fedledger.contracts.errors.ContractRevert`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from . import typed_data as td
from .artifacts import load_artifact, signature
from .canary import seal_bits
from .errors import ContractRevert, as_contract_revert
from .sortition import unpack
from .typed_data import Domain, SignedAction
from .types import MemberInfo, Role, RoundInfo, RoundOpened, TaskConfig

T = TypeVar("T")

GAS_MARGIN = 1.25
"""Head-room over the estimate: batch entries that run out of gas would be rejected silently."""

EMBEDDED_TX_GAS = 20_000_000
"""Gas limit of transactions on the embedded chain, where gas costs nothing and estimating is slow."""


@dataclass(frozen=True)
class Event:
    """A decoded contract event."""

    name: str
    args: dict[str, Any]
    block_number: int
    transaction_hash: str
    log_index: int
    address: str


@dataclass
class Sent:
    """A mined transaction: its receipt and the events it emitted."""

    receipt: TxReceipt
    events: list[Event] = field(default_factory=list)

    @property
    def gas_used(self) -> int:
        """Gas the transaction used."""
        return int(self.receipt["gasUsed"])

    def named(self, name: str) -> list[Event]:
        """Events called ``name``, in log order."""
        return [e for e in self.events if e.name == name]


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception as exc:
        revert = as_contract_revert(exc)
        if revert is None:
            raise
        raise revert from exc


class _Bound:
    """A deployed contract with revert translation, transaction sending and event decoding."""

    artifact_name = ""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract: Contract = w3.eth.contract(address=self.address, abi=load_artifact(self.artifact_name).abi)
        self._events_by_topic = {
            HexBytes(Web3.keccak(text=signature(item))): item["name"]
            for item in self.contract.abi
            if item.get("type") == "event"
        }

    def _view(self, name: str, *args: Any) -> Any:
        return _call(lambda: self.contract.functions[name](*args).call())

    def _send(self, sender: str, name: str, *args: Any, value: int = 0, gas: int | None = None) -> Sent:
        return send(self.w3, self.contract.functions[name](*args), sender, value=value, gas=gas, decoder=self)

    def decode_receipt(self, receipt: TxReceipt) -> list[Event]:
        """Decode this contract's events in ``receipt``."""
        return [e for log in receipt["logs"] if (e := self.decode_log(log)) is not None]

    def decode_log(self, log: Any) -> Event | None:
        """Decode one raw log of this contract, or ``None`` if it is not one of its events."""
        if to_checksum_address(log["address"]) != self.address or not log["topics"]:
            return None
        name = self._events_by_topic.get(HexBytes(log["topics"][0]))
        if name is None:
            return None
        decoded = self.contract.events[name]().process_log(log)
        return Event(
            name=name,
            args=dict(decoded["args"]),
            block_number=int(log["blockNumber"]),
            transaction_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
            log_index=int(log["logIndex"]),
            address=self.address,
        )

    def events(
        self,
        from_block: int = 0,
        to_block: int | str = "latest",
        names: Iterable[str] | None = None,
        round_: int | None = None,
    ) -> list[Event]:
        """Events of this contract in a block range, in chain order (optionally only ``names``, only of ``round_``).

        Every round event has the round as its first indexed argument, so ``round_`` filters on topic 1.
        """
        query: dict[str, Any] = {"address": self.address, "fromBlock": from_block, "toBlock": to_block}
        if round_ is not None:
            query["topics"] = [None, "0x" + round_.to_bytes(32, "big").hex()]
        logs = self.w3.eth.get_logs(query)  # type: ignore[arg-type]
        wanted = set(names) if names is not None else None
        out = [e for log in logs if (e := self.decode_log(log)) is not None]
        return [e for e in out if wanted is None or e.name in wanted]


def send(
    w3: Web3,
    fn: ContractFunction,
    sender: str,
    *,
    value: int = 0,
    gas: int | None = None,
    decoder: _Bound | None = None,
) -> Sent:
    """Send ``fn`` from ``sender`` and wait for it to be mined.

    Gas is estimated first, which surfaces a revert with its reason before anything is sent.

    Raises:
        ContractRevert: the call reverts (when estimating, or in the mined receipt).
    """
    params: dict[str, Any] = {"from": to_checksum_address(sender), "value": value}
    if gas is None and isinstance(w3.provider, EthereumTesterProvider):
        # eth-tester estimates by bisection (many executions); one call surfaces any revert.
        _call(lambda: fn.call(params) if hasattr(fn, "call") else fn.estimate_gas(params))
        gas = EMBEDDED_TX_GAS
    elif gas is None:
        gas = int(_call(lambda: fn.estimate_gas(params)) * GAS_MARGIN) + 10_000
    params["gas"] = gas
    tx_hash = _call(lambda: fn.transact(params))
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        if hasattr(fn, "call"):  # replay on the parent block to recover the reason
            _call(lambda: fn.call(params, block_identifier=receipt["blockNumber"] - 1))
        raise ContractRevert(None)
    return Sent(receipt, decoder.decode_receipt(receipt) if decoder else [])


def deploy_contract(
    w3: Web3, artifact_name: str, sender: str, *args: Any, value: int = 0, bytecode: str | None = None
) -> tuple[str, Sent]:
    """Deploy ``artifact_name`` with constructor ``args``; return its address and the receipt."""
    artifact = load_artifact(artifact_name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=bytecode or artifact.bytecode)
    sent = send(w3, factory.constructor(*args), sender, value=value)
    return to_checksum_address(sent.receipt["contractAddress"]), sent


class FLTaskContract(_Bound):
    """Typed access to one deployed ``FLTask``."""

    artifact_name = "FLTask"

    # ------------------------------------------------------------- views

    def config(self) -> TaskConfig:
        """The immutable task parameters."""
        return TaskConfig.from_tuple(self._view("config"))

    def domain(self) -> Domain:
        """The EIP-712 domain signatures for this task must use."""
        return Domain(chain_id=self.w3.eth.chain_id, verifying_contract=self.address)

    def current_round(self) -> int:
        """Number of the latest opened round (0 before the first)."""
        return int(self._view("currentRound"))

    def reward_pool(self) -> int:
        """Wei left in the reward pool."""
        return int(self._view("rewardPool"))

    def global_model_hash(self) -> bytes:
        """Hash of the current global model."""
        return bytes(self._view("globalModelHash"))

    def round_info(self, round_: int | None = None) -> RoundInfo:
        """Public state of the current round (``round_`` must be it, if given; earlier rounds live in events)."""
        return RoundInfo.from_tuple(self._view("getRound", self.current_round() if round_ is None else round_))

    def committee(self) -> tuple[list[str], list[str]]:
        """Proposers and voters of the current round, in seat order."""
        proposers, voters = self._view("committee")
        return list(proposers), list(voters)

    def role_of(self, round_: int, account: str) -> tuple[Role, int]:
        """Role of ``account`` in the current round ``round_`` and its seat within that role."""
        role, seat = self._view("roleOf", round_, to_checksum_address(account))
        return Role(role), int(seat)

    def items_of(self, voter_seat: int) -> list[int]:
        """The proposer seats voter ``voter_seat`` of the current round reviews, in the bit order of its vote."""
        return [int(i) for i in self._view("itemsOf", voter_seat)]

    def member(self, account: str) -> MemberInfo:
        """Stake, exit state, credited balance, nonce and member index of ``account``."""
        return MemberInfo.from_tuple(self._view("getMember", to_checksum_address(account)))

    def member_at(self, index: int) -> str | None:
        """The member holding ``index``, or None for a free index."""
        address = str(self._view("memberAt", index))
        return None if int(address, 16) == 0 else address

    def members(self) -> list[str]:
        """All members, by index."""
        return list(self._view("members"))

    def eligible_members(self) -> list[str]:
        """Members the next round may draw, by index."""
        return list(self._view("eligibleMembers"))

    def eligibility(self) -> list[int]:
        """The eligibility bitmap words the next draw uses."""
        return [int(w) for w in self._view("eligibility")]

    def preview_sortition(self, seed: bytes) -> tuple[list[str], list[str]]:
        """The committee the current eligible members would form under ``seed``."""
        proposers, voters = self._view("previewSortition", seed)
        return list(proposers), list(voters)

    def vote_commitment(self, round_: int, bits: int, salt: bytes, voter: str) -> bytes:
        """The commitment a voter must commit for ``bits`` and ``salt`` (computed by the contract)."""
        return bytes(self._view("voteCommitment", round_, bits, salt, to_checksum_address(voter)))

    def vote_digest(self) -> bytes:
        """Rolling digest of the current round's vote commitments (zero before the first)."""
        return bytes(self._view("voteDigest"))

    def nonce(self, account: str) -> int:
        """Next EIP-712 nonce of ``account`` (membership actions only: round actions carry none)."""
        return int(self._view("nonces", to_checksum_address(account)))

    def balance(self) -> int:
        """Wei held by the contract."""
        return int(self.w3.eth.get_balance(self.address))

    def opened(self, event: Event) -> RoundOpened:
        """The roles of a ``RoundOpened`` event of the current round, with the accounts read from the contract."""
        args = event.args
        indices = unpack(list(args["committee"]), args["numProposers"] + args["numVoters"])
        proposers, voters = self.committee()
        return RoundOpened(
            round=args["round"],
            seed=bytes(args["seed"]),
            committee=indices,
            eligible=[int(w) for w in args["eligible"]],
            reviewers=args["reviewers"],
            deadline=args["deadline"],
            proposers=proposers,
            voters=voters,
        )

    def committed_votes(self, round_: int, from_block: int = 0) -> list[tuple[int, bytes]]:
        """The (voter seat, commitment) pairs of the current round ``round_`` in commit order, from its events.

        This is the list a reveal brings (checked against :meth:`vote_digest`).
        """
        _, voters = self.committee()
        seats = {v: j for j, v in enumerate(voters)}
        events = self.events(from_block, names=("VoteCommitted",), round_=round_)
        return [(seats[e.args["voter"]], bytes(e.args["commitment"])) for e in events]

    # ------------------------------------------------------ membership

    def register(self, sender: str, stake: int) -> Sent:
        """Join with ``stake`` wei."""
        return self._send(sender, "register", value=stake)

    def add_stake(self, sender: str, amount: int) -> Sent:
        """Add ``amount`` wei of stake."""
        return self._send(sender, "addStake", value=amount)

    def fund_pool(self, sender: str, amount: int) -> Sent:
        """Add ``amount`` wei to the reward pool."""
        return self._send(sender, "fundPool", value=amount)

    def request_exit(self, sender: str) -> Sent:
        """Ask to leave."""
        return self._send(sender, "requestExit")

    def complete_exit(self, sender: str) -> Sent:
        """Leave after the exit delay; the stake is credited for withdrawal."""
        return self._send(sender, "completeExit")

    def withdraw(self, sender: str) -> Sent:
        """Receive everything credited to ``sender``."""
        return self._send(sender, "withdraw")

    # ----------------------------------------------------------- rounds

    def open_round(self, sender: str) -> tuple[RoundOpened, Sent]:
        """Open the next round (coordinator); returns the drawn roles."""
        sent = self._send(sender, "openRound")
        return self.opened(sent.named("RoundOpened")[0]), sent

    def publish_and_open(self, sender: str, round_: int, model_hash: bytes) -> tuple[RoundOpened, Sent]:
        """Publish the global model of ``round_`` and open the next round in one transaction (per-update mode)."""
        sent = self._send(sender, "publishAndOpen", round_, model_hash)
        return self.opened(sent.named("RoundOpened")[0]), sent

    def commit_update(self, sender: str, round_: int, update_hash: bytes, num_examples: int) -> Sent:
        """Commit an update as ``sender``."""
        return self._send(sender, "commitUpdate", round_, update_hash, num_examples)

    def set_canary_seal(self, sender: str, seal: bytes) -> Sent:
        """Set ``sender``'s canary seal (the last unrevealed link of its chain, contracts/canary.py)."""
        return self._send(sender, "setCanarySeal", seal)

    def canary_seal(self, account: str) -> tuple[bytes, int]:
        """The canary seal of ``account`` (its low 224 bits, as bytes32) and the round it was set in."""
        word = int(self._view("canarySeal", account))
        return seal_bits(word.to_bytes(32, "big")), word >> 224

    def declare_canary(self, sender: str, round_: int, preimage: bytes, signature: bytes) -> Sent:
        """Declare ``sender``'s update of ``round_`` a canary, with the coordinator's compact ``signature``."""
        return self._send(sender, "declareCanary", round_, preimage, signature[:32], signature[32:64])

    def propose_aggregate(self, sender: str, round_: int, candidate_hash: bytes, open_next: bool = False) -> Sent:
        """Propose the aggregated candidate (coordinator, aggregate mode).

        With ``open_next`` the transaction that finalizes the round opens the next one.
        """
        return self._send(sender, "proposeAggregate", round_, candidate_hash, open_next)

    def commit_vote(self, sender: str, round_: int, commitment: bytes) -> Sent:
        """Commit a hidden vote as ``sender``."""
        return self._send(sender, "commitVote", round_, commitment)

    def reveal_vote(
        self, sender: str, round_: int, bits: int, salt: bytes, committed: Sequence[tuple[int, bytes]] | None = None
    ) -> Sent:
        """Reveal a vote as ``sender``; ``committed`` defaults to the round's vote commitments from the events."""
        listed = self.committed_votes(round_) if committed is None else committed
        return self._send(sender, "revealVote", round_, bits, salt, [(j, bytes(c)) for j, c in listed])

    def advance_phase(self, sender: str, round_: int) -> Sent:
        """Move ``round_`` on after everyone acted or the deadline passed."""
        return self._send(sender, "advancePhase", round_)

    def finalize_round(self, sender: str, round_: int) -> Sent:
        """Tally, reward and slash ``round_``."""
        return self._send(sender, "finalizeRound", round_)

    def publish_global(self, sender: str, round_: int, model_hash: bytes) -> Sent:
        """Publish the hash of the aggregate of accepted updates (coordinator, per-update mode)."""
        return self._send(sender, "publishGlobal", round_, model_hash)

    def relay(
        self,
        sender: str,
        signed: Sequence[SignedAction],
        gas: int | None = None,
        *,
        committee: tuple[Sequence[str], Sequence[str]] | None = None,
        committed: Sequence[tuple[int, bytes]] | None = None,
    ) -> Sent:
        """Relay signed actions of one type in one batch transaction paid by ``sender``.

        Round actions need their signers' seats, taken from ``committee`` (proposers, voters of the
        current round; read from the contract when not given); a reveal batch also brings the
        round's committed votes (``committed``, else read from the events) and the proposers.
        A signer without a seat gets seat 0 (the contract rejects the entry, as for any stranger).
        """
        if not signed:
            raise ValueError("nothing to relay")
        kinds = {s.action.name for s in signed}
        if len(kinds) != 1:
            raise ValueError(f"a batch holds one action type, got {sorted(kinds)}")
        action = signed[0].action
        function = action.batch_function
        if not action.round_action:
            return self._send(sender, function, [s.as_request() for s in signed], gas=gas)
        proposers, voters = committee if committee is not None else self.committee()
        holders = list(proposers) if action is td.COMMIT_UPDATE else list(voters)
        seats = {a: j for j, a in enumerate(holders)}
        requests = [s.as_request(seats.get(s.signer, 0)) for s in signed]
        if action is not td.REVEAL_VOTE:
            return self._send(sender, function, requests, gas=gas)
        round_ = int(signed[0].message["round"])
        listed = self.committed_votes(round_) if committed is None else committed
        return self._send(sender, function, requests, [(j, bytes(c)) for j, c in listed], list(proposers), gas=gas)


class FLTaskFactoryContract(_Bound):
    """Typed access to the task factory / registry."""

    artifact_name = "FLTaskFactory"

    def create_task(self, sender: str, config: TaskConfig, pool: int = 0) -> tuple[FLTaskContract, Sent]:
        """Create a task with ``config``, seeding its reward pool with ``pool`` wei."""
        sent = self._send(sender, "createTask", config.to_tuple(), value=pool)
        address = sent.named("TaskCreated")[0].args["task"]
        task = FLTaskContract(self.w3, address)
        sent.events.extend(task.decode_receipt(sent.receipt))
        return task, sent

    def tasks(self) -> list[str]:
        """All tasks, in creation order."""
        return list(self._view("tasks"))

    def is_task(self, address: str) -> bool:
        """True when ``address`` was created by this factory."""
        return bool(self._view("isTask", to_checksum_address(address)))

    def code_parts(self) -> list[str]:
        """Addresses of the code stores holding FLTask's creation code, in order."""
        return list(self._view("codeParts"))
