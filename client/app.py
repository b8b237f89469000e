"""The participant's Flower ClientApp: join, train and submit, vote and reveal.

Components in pyproject (``[tool.flwr.app.components]``): ``clientapp =
"fedledger.client.app:app"``. The node's partition comes from Flower's node config
(``partition-id``); its key from the run config's ``keys`` (dev keys in simulations).
"""

from __future__ import annotations

from collections import OrderedDict

import grpc
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedledger.config import RunSettings
from fedledger.server.proto import gateway_pb2 as pb

from .participant import Participant, participant

app = ClientApp()


def _participant(context: Context) -> Participant:
    settings = RunSettings.from_run_config(context.run_config)
    return participant(settings.model_dump_json(), int(context.node_config["partition-id"]))


def _unless_silent(me: Participant) -> Participant:
    if me.attack is not None and me.attack.kind == "silent":
        raise RuntimeError("this simulated node is silent: it never answers")
    return me


def _arrays(record: ArrayRecord) -> OrderedDict[str, np.ndarray]:
    return OrderedDict((name, array.numpy()) for name, array in record.items())


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
    return _reply(
        msg,
        config=ConfigRecord(
            {"address": me.address, "partition-id": me.partition_id, "signature": signature, "register-tx": register_tx}
        ),
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train from the global model; governed: submit through the gateway, plain: reply with the model."""
    me = _unless_silent(_participant(context))
    round_ = int(msg.content["config"]["server-round"])
    trained, num_examples, metrics = me.train(round_, _arrays(msg.content["arrays"]))
    metric_record = MetricRecord({"num-examples": num_examples, **metrics})
    if not me.settings.governance:
        record = ArrayRecord(OrderedDict((name, Array(value)) for name, value in trained.items()))
        return _reply(msg, arrays=record, metrics=metric_record)
    result, error = None, None
    try:
        result = me.submit(round_, trained, num_examples)
    except grpc.RpcError as exc:
        error = exc
    config = {"address": me.address, **_outcome(result, error)}
    if result is not None:
        config["update-hash"] = result.blob_hash
    return _reply(msg, metrics=metric_record, config=ConfigRecord(config))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """``vote``: score the items and commit; ``reveal``: reveal the committed vote."""
    me = _unless_silent(_participant(context))
    config = msg.content["config"]
    round_ = int(config["server-round"])
    result, error = None, None
    if config["action"] == "vote":
        tolerance = me.gateway.task().config.vote_tolerance_bps
        items = [bytes(i) for i in config["items"]]
        vote = me.decide(_arrays(msg.content["arrays"]), items, [int(w) for w in config["weights"]], tolerance)
        try:
            result, salt = me.commit_vote(round_, vote.bits)
            context.state["vote"] = ConfigRecord({"round": round_, "bits": str(vote.bits), "salt": salt})
        except grpc.RpcError as exc:
            error = exc
        outcome = {"address": me.address, "bits": str(vote.bits), **_outcome(result, error)}
        return _reply(msg, metrics=MetricRecord({"score-global": vote.score_global}), config=ConfigRecord(outcome))
    if config["action"] != "reveal":
        raise ValueError(f"unknown evaluate action {config['action']!r}")
    stored = context.state.get("vote")
    if stored is None or int(stored["round"]) != round_:
        raise RuntimeError(f"no committed vote for round {round_} in this node's state")
    try:
        result = me.reveal_vote(round_, int(stored["bits"]), bytes(stored["salt"]))
    except grpc.RpcError as exc:
        error = exc
    return _reply(msg, config=ConfigRecord({"address": me.address, **_outcome(result, error)}))
