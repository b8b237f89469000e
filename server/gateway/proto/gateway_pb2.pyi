from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATUS_UNSPECIFIED: _ClassVar[ActionStatus]
    INCLUDED: _ClassVar[ActionStatus]
    REJECTED: _ClassVar[ActionStatus]
    QUEUED: _ClassVar[ActionStatus]
ACTION_STATUS_UNSPECIFIED: ActionStatus
INCLUDED: ActionStatus
REJECTED: ActionStatus
QUEUED: ActionStatus

class GetTaskRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("chain_id", "task_address", "factory_address", "relayer_address", "coordinator", "config_json", "current_round", "global_model_hash", "reward_pool_wei", "max_blob_bytes", "deployment_block")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FACTORY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RELAYER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    REWARD_POOL_WEI_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_BLOCK_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    task_address: str
    factory_address: str
    relayer_address: str
    coordinator: str
    config_json: str
    current_round: int
    global_model_hash: bytes
    reward_pool_wei: str
    max_blob_bytes: int
    deployment_block: int
    def __init__(self, chain_id: _Optional[int] = ..., task_address: _Optional[str] = ..., factory_address: _Optional[str] = ..., relayer_address: _Optional[str] = ..., coordinator: _Optional[str] = ..., config_json: _Optional[str] = ..., current_round: _Optional[int] = ..., global_model_hash: _Optional[bytes] = ..., reward_pool_wei: _Optional[str] = ..., max_blob_bytes: _Optional[int] = ..., deployment_block: _Optional[int] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("addresses",)
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("address", "stake_wei", "owed_wei")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STAKE_WEI_FIELD_NUMBER: _ClassVar[int]
    OWED_WEI_FIELD_NUMBER: _ClassVar[int]
    address: str
    stake_wei: str
    owed_wei: str
    def __init__(self, address: _Optional[str] = ..., stake_wei: _Optional[str] = ..., owed_wei: _Optional[str] = ...) -> None: ...

class BalanceList(_message.Message):
    __slots__ = ("balances", "block_number")
    BALANCES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    balances: _containers.RepeatedCompositeFieldContainer[Balance]
    block_number: int
    def __init__(self, balances: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ..., block_number: _Optional[int] = ...) -> None: ...

class AccountInfo(_message.Message):
    __slots__ = ("address", "chain_nonce", "balance_wei", "registered", "exiting", "exit_ready_at", "stake_wei", "owed_wei", "action_nonce", "member_index")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_NONCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_WEI_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    EXITING_FIELD_NUMBER: _ClassVar[int]
    EXIT_READY_AT_FIELD_NUMBER: _ClassVar[int]
    STAKE_WEI_FIELD_NUMBER: _ClassVar[int]
    OWED_WEI_FIELD_NUMBER: _ClassVar[int]
    ACTION_NONCE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_INDEX_FIELD_NUMBER: _ClassVar[int]
    address: str
    chain_nonce: int
    balance_wei: str
    registered: bool
    exiting: bool
    exit_ready_at: int
    stake_wei: str
    owed_wei: str
    action_nonce: int
    member_index: int
    def __init__(self, address: _Optional[str] = ..., chain_nonce: _Optional[int] = ..., balance_wei: _Optional[str] = ..., registered: _Optional[bool] = ..., exiting: _Optional[bool] = ..., exit_ready_at: _Optional[int] = ..., stake_wei: _Optional[str] = ..., owed_wei: _Optional[str] = ..., action_nonce: _Optional[int] = ..., member_index: _Optional[int] = ...) -> None: ...

class PrepareTransactionRequest(_message.Message):
    __slots__ = ("data", "value_wei")
    FROM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    VALUE_WEI_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    value_wei: str
    def __init__(self, data: _Optional[bytes] = ..., value_wei: _Optional[str] = ..., **kwargs) -> None: ...

class PreparedTransaction(_message.Message):
    __slots__ = ("chain_id", "nonce", "gas", "max_fee_per_gas", "max_priority_fee_per_gas", "to")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    nonce: int
    gas: int
    max_fee_per_gas: str
    max_priority_fee_per_gas: str
    to: str
    def __init__(self, chain_id: _Optional[int] = ..., nonce: _Optional[int] = ..., gas: _Optional[int] = ..., max_fee_per_gas: _Optional[str] = ..., max_priority_fee_per_gas: _Optional[str] = ..., to: _Optional[str] = ...) -> None: ...

class SendTransactionRequest(_message.Message):
    __slots__ = ("raw_transaction",)
    RAW_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    raw_transaction: bytes
    def __init__(self, raw_transaction: _Optional[bytes] = ...) -> None: ...

class TransactionResult(_message.Message):
    __slots__ = ("transaction_hash", "block_number", "gas_used", "events", "opened")
    TRANSACTION_HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GAS_USED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    transaction_hash: bytes
    block_number: int
    gas_used: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    opened: RoundRoles
    def __init__(self, transaction_hash: _Optional[bytes] = ..., block_number: _Optional[int] = ..., gas_used: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., opened: _Optional[_Union[RoundRoles, _Mapping]] = ...) -> None: ...

class SignedAction(_message.Message):
    __slots__ = ("action", "message_json", "signature", "no_wait")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    action: str
    message_json: str
    signature: bytes
    no_wait: bool
    def __init__(self, action: _Optional[str] = ..., message_json: _Optional[str] = ..., signature: _Optional[bytes] = ..., no_wait: _Optional[bool] = ...) -> None: ...

class SubmitUpdateMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SubmitUpdateHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SubmitUpdateHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SubmitUpdateHeader(_message.Message):
    __slots__ = ("commitment", "size")
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    commitment: SignedAction
    size: int
    def __init__(self, commitment: _Optional[_Union[SignedAction, _Mapping]] = ..., size: _Optional[int] = ...) -> None: ...

class ActionResult(_message.Message):
    __slots__ = ("status", "transaction_hash", "block_number", "reason", "batch_size", "blob_hash")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOB_HASH_FIELD_NUMBER: _ClassVar[int]
    status: ActionStatus
    transaction_hash: bytes
    block_number: int
    reason: str
    batch_size: int
    blob_hash: bytes
    def __init__(self, status: _Optional[_Union[ActionStatus, str]] = ..., transaction_hash: _Optional[bytes] = ..., block_number: _Optional[int] = ..., reason: _Optional[str] = ..., batch_size: _Optional[int] = ..., blob_hash: _Optional[bytes] = ...) -> None: ...

class FetchBlobRequest(_message.Message):
    __slots__ = ("hash",)
    HASH_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    def __init__(self, hash: _Optional[bytes] = ...) -> None: ...

class BlobChunk(_message.Message):
    __slots__ = ("data", "size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    size: int
    def __init__(self, data: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class BlobInfo(_message.Message):
    __slots__ = ("hash", "size")
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    size: int
    def __init__(self, hash: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class RoundRoles(_message.Message):
    __slots__ = ("round", "seed", "proposers", "voters", "deadline", "transaction_hash", "reviewers")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROPOSERS_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_HASH_FIELD_NUMBER: _ClassVar[int]
    REVIEWERS_FIELD_NUMBER: _ClassVar[int]
    round: int
    seed: bytes
    proposers: _containers.RepeatedScalarFieldContainer[str]
    voters: _containers.RepeatedScalarFieldContainer[str]
    deadline: int
    transaction_hash: bytes
    reviewers: int
    def __init__(self, round: _Optional[int] = ..., seed: _Optional[bytes] = ..., proposers: _Optional[_Iterable[str]] = ..., voters: _Optional[_Iterable[str]] = ..., deadline: _Optional[int] = ..., transaction_hash: _Optional[bytes] = ..., reviewers: _Optional[int] = ...) -> None: ...

class ProposeModelMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ProposeModelHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[ProposeModelHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ProposeModelHeader(_message.Message):
    __slots__ = ("raw_transaction", "size")
    RAW_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    raw_transaction: bytes
    size: int
    def __init__(self, raw_transaction: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class StoreBlobMessage(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: StoreBlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[StoreBlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class StoreBlobHeader(_message.Message):
    __slots__ = ("command", "size")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    command: CoordinatorCommand
    size: int
    def __init__(self, command: _Optional[_Union[CoordinatorCommand, _Mapping]] = ..., size: _Optional[int] = ...) -> None: ...

class CoordinatorCommand(_message.Message):
    __slots__ = ("command", "round", "subject", "deadline", "signature")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    command: str
    round: int
    subject: bytes
    deadline: int
    signature: bytes
    def __init__(self, command: _Optional[str] = ..., round: _Optional[int] = ..., subject: _Optional[bytes] = ..., deadline: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class FlushResult(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: int
    def __init__(self, actions: _Optional[int] = ...) -> None: ...

class GetRoundRequest(_message.Message):
    __slots__ = ("round", "brief", "gas")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BRIEF_FIELD_NUMBER: _ClassVar[int]
    GAS_FIELD_NUMBER: _ClassVar[int]
    round: int
    brief: bool
    gas: bool
    def __init__(self, round: _Optional[int] = ..., brief: _Optional[bool] = ..., gas: _Optional[bool] = ...) -> None: ...

class ProposerState(_message.Message):
    __slots__ = ("address", "update_hash", "num_examples", "committed", "accepted", "tally")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_HASH_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    TALLY_FIELD_NUMBER: _ClassVar[int]
    address: str
    update_hash: bytes
    num_examples: int
    committed: bool
    accepted: bool
    tally: str
    def __init__(self, address: _Optional[str] = ..., update_hash: _Optional[bytes] = ..., num_examples: _Optional[int] = ..., committed: _Optional[bool] = ..., accepted: _Optional[bool] = ..., tally: _Optional[str] = ...) -> None: ...

class VoterState(_message.Message):
    __slots__ = ("address", "commitment", "revealed", "bits", "items")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    REVEALED_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    address: str
    commitment: bytes
    revealed: bool
    bits: str
    items: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, address: _Optional[str] = ..., commitment: _Optional[bytes] = ..., revealed: _Optional[bool] = ..., bits: _Optional[str] = ..., items: _Optional[_Iterable[int]] = ...) -> None: ...

class RoundState(_message.Message):
    __slots__ = ("round", "phase", "deadline", "seed", "candidate", "global_model_hash", "global_published", "outcomes", "reward_wei", "proposers", "voters", "queued_actions", "chain_time", "num_updates", "num_vote_commits", "num_reveals", "gas_used", "reviewers", "decided")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    REWARD_WEI_FIELD_NUMBER: _ClassVar[int]
    PROPOSERS_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TIME_FIELD_NUMBER: _ClassVar[int]
    NUM_UPDATES_FIELD_NUMBER: _ClassVar[int]
    NUM_VOTE_COMMITS_FIELD_NUMBER: _ClassVar[int]
    NUM_REVEALS_FIELD_NUMBER: _ClassVar[int]
    GAS_USED_FIELD_NUMBER: _ClassVar[int]
    REVIEWERS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    round: int
    phase: str
    deadline: int
    seed: bytes
    candidate: bytes
    global_model_hash: bytes
    global_published: bool
    outcomes: str
    reward_wei: str
    proposers: _containers.RepeatedCompositeFieldContainer[ProposerState]
    voters: _containers.RepeatedCompositeFieldContainer[VoterState]
    queued_actions: int
    chain_time: int
    num_updates: int
    num_vote_commits: int
    num_reveals: int
    gas_used: int
    reviewers: int
    decided: str
    def __init__(self, round: _Optional[int] = ..., phase: _Optional[str] = ..., deadline: _Optional[int] = ..., seed: _Optional[bytes] = ..., candidate: _Optional[bytes] = ..., global_model_hash: _Optional[bytes] = ..., global_published: _Optional[bool] = ..., outcomes: _Optional[str] = ..., reward_wei: _Optional[str] = ..., proposers: _Optional[_Iterable[_Union[ProposerState, _Mapping]]] = ..., voters: _Optional[_Iterable[_Union[VoterState, _Mapping]]] = ..., queued_actions: _Optional[int] = ..., chain_time: _Optional[int] = ..., num_updates: _Optional[int] = ..., num_vote_commits: _Optional[int] = ..., num_reveals: _Optional[int] = ..., gas_used: _Optional[int] = ..., reviewers: _Optional[int] = ..., decided: _Optional[str] = ...) -> None: ...

class GetEventsRequest(_message.Message):
    __slots__ = ("round", "participant", "names")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    round: int
    participant: str
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, round: _Optional[int] = ..., participant: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("name", "args_json", "block_number", "transaction_hash", "log_index", "topics", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_HASH_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    args_json: str
    block_number: int
    transaction_hash: bytes
    log_index: int
    topics: _containers.RepeatedScalarFieldContainer[bytes]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., args_json: _Optional[str] = ..., block_number: _Optional[int] = ..., transaction_hash: _Optional[bytes] = ..., log_index: _Optional[int] = ..., topics: _Optional[_Iterable[bytes]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EventList(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...
