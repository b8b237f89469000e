"""The participant's Flower ClientApp: join, train and submit, vote and reveal.

Components in pyproject (``[tool.flwr.app.components]``): ``clientapp =
"fedledger.client.app:app"``. A simulated node's partition comes from Flower's node
config (``partition-id``), its key from the run config's ``keys`` (dev keys in simulations); a
live node's node config names its keystore, data and gateway (``fedledger node join``).
"""

from __future__ import annotations

from collections import OrderedDict

import grpc
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedledger import codec
from fedledger.aggregation import sync
from fedledger.aggregation.base import from_record, to_record
from fedledger.config import RunSettings
from fedledger.contracts.types import VoteMode
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.server.gateway.traffic import Bytes

from .agent import AgentAccount
from .participant import Participant, live_participant, participant

app = ClientApp()
AGENT_REVEAL_WAIT = 5.0
"""Seconds a reveal message waits for the node agent's own reveal before revealing itself."""


def _participant(context: Context) -> Participant:
    """A live node (``fedledger node join`` puts keystore, data and gateway in the node config), or a simulated one."""
    settings = RunSettings.from_run_config(context.run_config).model_dump_json()
    node = context.node_config
    if "agent" in node:
        ca = str(node.get("gateway-ca", ""))
        return live_participant(settings, str(node["agent"]), str(node["data"]), str(node["gateway"]), ca)
    return participant(settings, int(node["partition-id"]))


def _unless_silent(me: Participant) -> Participant:
    if me.silent:
        raise RuntimeError("this simulated node is silent: it never answers")
    return me


HELD_STATE, HELD_HASH = "global-state", "global-hash"
PRIVATE = "private:"


def _private(context: Context) -> dict[str, OrderedDict[str, np.ndarray]]:
    """The strategy's private storage of this node (e.g. a local head), kept in ``context.state``."""
    return {
        key[len(PRIVATE) :]: from_record(record)
        for key, record in context.state.array_records.items()
        if key.startswith(PRIVATE)
    }


def _keep_private(context: Context, private: dict[str, OrderedDict[str, np.ndarray]]) -> None:
    for key, arrays in private.items():
        context.state[PRIVATE + key] = to_record(arrays)


def _synced_state(me: Participant, msg: Message, context: Context) -> OrderedDict[str, np.ndarray]:
    """The global state this message brings: whole, or patched onto the one this node holds.

    With sparse sync the node keeps the state in ``context.state``; a payload against a state it
    does not hold (it restarted) falls back to fetching the whole state from the gateway. The
    result must hash to ``sync-target``, the hash the chain records, or the message is refused.
    """
    config = msg.content["config"]
    payload = from_record(msg.content["arrays"])
    if "sync-target" not in config:
        return payload  # plain Flower: the whole state, no chain to check it against
    target = bytes(config["sync-target"])
    base = bytes(config["sync-base"])
    if not me.plugin.sparse_sync:
        state = payload
    elif not base:
        blank = me.plugin.blank_state()
        assert blank is not None, "a sparse-sync strategy defines its blank state"
        state = sync.patch(blank, payload)
    else:
        held = context.state.get(HELD_HASH)
        if held is not None and bytes(held["hash"]) == base:
            state = sync.patch(from_record(context.state[HELD_STATE]), payload)  # type: ignore[arg-type]
        else:
            state = codec.decode(me.gateway.fetch_blob(target))
    if keccak256(codec.encode(state)) != target:
        raise ValueError(f"the synced global state does not hash to 0x{target.hex()}")
    if me.plugin.sparse_sync:
        context.state[HELD_STATE] = to_record(state)
        context.state[HELD_HASH] = ConfigRecord({"hash": target})
    return state


def _gateway_bytes(me: Participant, before: Bytes) -> dict[str, int]:
    now = me.gateway.traffic.snapshot()
    return {"gateway-bytes-sent": now.sent - before.sent, "gateway-bytes-received": now.received - before.received}


def _reply(msg: Message, **records: object) -> Message:
    return Message(content=RecordDict(records), reply_to=msg)  # type: ignore[arg-type]


def _outcome(result: pb.ActionResult | None, error: grpc.RpcError | None) -> dict[str, str]:
    if error is not None:
        return {"status": f"REFUSED:{error.code().name}", "reason": error.details() or ""}
    assert result is not None
    return {"status": pb.ActionStatus.Name(result.status), "reason": result.reason}


@app.query()
def query(msg: Message, context: Context) -> Message:
    """``join``: prove the node's address (and sign its registration); ``identify``: name it."""
    config = msg.content["config"]
    me = _participant(context)
    if config["action"] == "identify":
        return _reply(msg, config=ConfigRecord({"address": me.address, "partition-id": me.partition_id}))
    if config["action"] != "join":
        raise ValueError(f"unknown query action {config['action']!r}")
    signature, register_tx = me.join(context.node_id, bytes(config["challenge"]))
    answer = {"address": me.address, "partition-id": me.partition_id, "signature": signature}
    answer |= {"register-tx": register_tx, "reveals-itself": isinstance(me.key, AgentAccount)}  # the agent reveals
    return _reply(msg, config=ConfigRecord(answer))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the global model; governed: submit through the gateway, plain: reply with the model."""
    me = _unless_silent(_participant(context))
    before = me.gateway.traffic.snapshot() if me.settings.governance else Bytes()
    round_ = int(msg.content["config"]["server-round"])
    private = _private(context)
    trained, num_examples, metrics = me.train(round_, _synced_state(me, msg, context), private)
    _keep_private(context, private)
    if not me.settings.governance:
        record = ArrayRecord(OrderedDict((name, Array(value)) for name, value in trained.items()))
        return _reply(msg, arrays=record, metrics=MetricRecord({"num-examples": num_examples, **metrics}))
    result, error = None, None
    try:
        result = me.submit(round_, trained, num_examples)
    except grpc.RpcError as exc:
        error = exc
    metric_record = MetricRecord({"num-examples": num_examples, **metrics, **_gateway_bytes(me, before)})
    config = {"address": me.address, **_outcome(result, error)}
    if result is not None:
        config["update-hash"] = result.blob_hash
    return _reply(msg, metrics=metric_record, config=ConfigRecord(config))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """``vote``: score the items and commit; ``reveal``: reveal the committed vote."""
    me = _unless_silent(_participant(context))
    before = me.gateway.traffic.snapshot()
    config = msg.content["config"]
    round_ = int(config["server-round"])
    result, error = None, None
    if config["action"] == "vote":
        task = me.gateway.task().config
        items = [bytes(i) for i in config["items"]]
        state = _synced_state(me, msg, context)
        vote = me.decide(
            round_,
            state,
            items,
            [int(w) for w in config["weights"]],
            rule=task.vote_rule,
            tolerance_bps=task.vote_tolerance_bps,
            aggregate=task.vote_mode is VoteMode.AGGREGATE,
            proposers=[str(p) for p in config.get("proposers", [])],
            private=_private(context),
        )
        try:
            result, salt = me.commit_vote(round_, vote.bits)
            context.state["vote"] = ConfigRecord(
                {"round": round_, "bits": str(vote.bits), "salt": salt, "reveal": vote.reveal}
            )
            if vote.reveal and isinstance(me.key, AgentAccount):
                me.key.reveal_later(round_, vote.bits, salt)
        except grpc.RpcError as exc:
            error = exc
        outcome = {"address": me.address, "bits": str(vote.bits), **_outcome(result, error)}
        metrics = MetricRecord({"score-global": vote.score_global, **_gateway_bytes(me, before)})
        return _reply(msg, metrics=metrics, config=ConfigRecord(outcome))
    if config["action"] == "report":
        metrics = me.report(_synced_state(me, msg, context), _private(context))
        return _reply(msg, metrics=MetricRecord(metrics), config=ConfigRecord({"address": me.address}))
    if config["action"] != "reveal":
        raise ValueError(f"unknown evaluate action {config['action']!r}")
    stored = context.state.get("vote")
    if stored is None or int(stored["round"]) != round_:
        raise RuntimeError(f"no committed vote for round {round_} in this node's state")
    if not bool(stored.get("reveal", True)):  # a simulated no_reveal attacker keeps its vote hidden
        config_record = ConfigRecord({"address": me.address, "status": "WITHHELD", "reason": "never reveals"})
        return _reply(msg, config=config_record, metrics=MetricRecord(_gateway_bytes(me, before)))
    if isinstance(me.key, AgentAccount):  # the agent may have revealed it already
        status, reason = me.key.reveal_status(round_, wait=AGENT_REVEAL_WAIT)
        if status in ("QUEUED", "INCLUDED"):
            config_record = ConfigRecord({"address": me.address, "status": status, "reason": f"by the agent {reason}"})
            return _reply(msg, config=config_record, metrics=MetricRecord(_gateway_bytes(me, before)))
    try:
        result = me.reveal_vote(round_, int(stored["bits"]), bytes(stored["salt"]))
    except grpc.RpcError as exc:
        error = exc
    config_record = ConfigRecord({"address": me.address, **_outcome(result, error)})
    return _reply(msg, config=config_record, metrics=MetricRecord(_gateway_bytes(me, before)))
