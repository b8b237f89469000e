"""Bind Flower node ids to on-chain addresses: each node signs a fresh challenge.

The coordinator sends every node a random challenge; the node answers with its address and an
EIP-712 ``NodeBinding`` signature over (address, node id, challenge) on the task's domain, plus,
when it is not a member yet, its own signed ``register`` transaction. The coordinator keeps the
nodes whose signature checks out and relays their registrations in address order, so that the
member list (and with it every draw) does not depend on which node answered first.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from fedledger.contracts import typed_data as td
from fedledger.server.gateway.client import GatewayClient

log = logging.getLogger(__name__)

UNREACHED = (ErrorCode.NODE_UNAVAILABLE, ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE)
"""Flower's errors for a message that never reached a node: the node did not answer, it may yet."""


@dataclass
class Binding:
    """Which node speaks for which address."""

    nodes: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    self_revealing: set[str] = field(default_factory=set)
    """Addresses whose node agent reveals votes without being asked (``fedledger node join``)."""
    unreached: set[int] = field(default_factory=set)
    """Listed node ids that did not answer (a SuperLink's database remembers nodes that are gone)."""

    def node_of(self, address: str) -> int | None:
        """The node id bound to ``address`` (None if no node proved it)."""
        return self.nodes.get(address)

    def answered(self) -> set[int]:
        """The node ids that answered: bound, or refused for a reason."""
        return set(self.nodes.values()) | set(self.refused)

    def merge(self, other: Binding) -> None:
        """Add what a later :func:`bind_nodes` of other node ids found."""
        self.nodes |= other.nodes
        self.partitions |= other.partitions
        self.refused |= other.refused
        self.self_revealing |= other.self_revealing
        self.unreached = (self.unreached | other.unreached) - self.answered()


def _query(grid: Grid, node_ids: list[int], configs: dict[int, ConfigRecord], timeout: float) -> list[Message]:
    messages = [
        Message(content=RecordDict({"config": configs[n]}), message_type=MessageType.QUERY, dst_node_id=n)
        for n in node_ids
    ]
    return list(grid.send_and_receive(messages, timeout=timeout))


def _reached(replies: list[Message], binding: Binding) -> list[Message]:
    """The replies from nodes the message reached; the others stay in ``binding.unreached``."""
    reached = [r for r in replies if not (r.has_error() and r.error.code in UNREACHED)]
    binding.unreached -= {r.metadata.src_node_id for r in reached}
    return reached


def bind_nodes(
    grid: Grid,
    node_ids: list[int],
    gateway: GatewayClient | None,
    timeout: float = 120.0,
    on_registering: Callable[[int], None] = lambda _count: None,
) -> Binding:
    """Ask every node to prove its address (and register); without a gateway, just to name it.

    ``on_registering(count)`` is told before the ``count`` registrations are relayed.
    """
    binding = Binding(unreached=set(node_ids))  # until their reply comes
    if gateway is None:
        replies = _query(grid, node_ids, {n: ConfigRecord({"action": "identify"}) for n in node_ids}, timeout)
        for reply in _reached(replies, binding):
            if reply.has_error():
                binding.refused[reply.metadata.src_node_id] = reply.error.reason
                continue
            config = reply.content["config"]
            binding.nodes[str(config["address"])] = reply.metadata.src_node_id
            binding.partitions[str(config["address"])] = int(config["partition-id"])
        return binding

    challenges = {n: secrets.token_bytes(32) for n in node_ids}
    configs = {n: ConfigRecord({"action": "join", "challenge": challenges[n]}) for n in node_ids}
    domain = gateway.task().domain
    registrations: dict[str, bytes] = {}
    for reply in _reached(_query(grid, node_ids, configs, timeout), binding):
        node_id = reply.metadata.src_node_id
        if reply.has_error():
            binding.refused[node_id] = reply.error.reason
            continue
        config = reply.content["config"]
        address = str(config["address"])
        message = td.node_binding_message(address, node_id, challenges[node_id])
        signed = td.SignedAction(td.NODE_BINDING, message, bytes(config["signature"]))
        if not td.verify(signed, domain):
            binding.refused[node_id] = f"signature does not prove {address}"
            continue
        if address in binding.nodes:
            binding.refused[node_id] = f"{address} is already bound to node {binding.nodes[address]}"
            continue
        binding.nodes[address] = node_id
        binding.partitions[address] = int(config["partition-id"])
        if bool(config.get("reveals-itself", False)):
            binding.self_revealing.add(address)
        if config["register-tx"]:
            registrations[address] = bytes(config["register-tx"])
    on_registering(len(registrations))
    for address in sorted(registrations):  # deterministic member order
        gateway.send_transaction(registrations[address])
    for node_id, reason in binding.refused.items():
        log.warning("node %d not bound: %s", node_id, reason)
    return binding
