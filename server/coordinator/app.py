"""The coordinator's Flower ServerApp: governed rounds, or the same strategy as plain Flower.

Components in pyproject (``[tool.flwr.app.components]``): ``serverapp =
"fedledger.server.coordinator.app:app"``. Settings come from the run config (fedledger.config.RunSettings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedledger import codec
from fedledger.aggregation.base import FedledgerStrategy, from_record, to_record
from fedledger.aggregation.registry import get_strategy
from fedledger.client.identity import coordinator_key
from fedledger.config import RunSettings
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.client import GatewayClient, read_ca
from fedledger.simulation.tasks import get_task

from .binding import Binding, bind_nodes
from .governed import Arrays, GovernedStrategy
from .results import Recorder, RoundResult, RunSummary

log = logging.getLogger(__name__)

app = ServerApp()
PULL_INTERVAL = 0.01
"""Seconds between the simulation grid's polls for replies (Flower's InMemoryGrid: 0.1). Every message
phase waits for the next poll after its last reply; a governed round has three phases."""


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {count} nodes connected after {timeout:.0f}s")
        time.sleep(0.2)


def _bind(grid: Grid, settings: RunSettings, gateway: GatewayClient, nodes: list[int], recorder: Recorder) -> Binding:
    """Bind nodes until ``num_clients`` of them answered, within ``node_wait``.

    A SuperLink restarted on its database lists the nodes it knew, also those that are gone or
    not reconnected yet: the message does not reach them. They are asked again, with any node
    listed since, until enough answered (bound, or refused for a reason of their own).
    """
    deadline = time.monotonic() + settings.node_wait
    binding = Binding()
    while True:
        answered = binding.answered()
        asked = [n for n in nodes if n not in answered]
        binding.merge(
            bind_nodes(grid, asked, gateway, on_registering=lambda count: recorder.event(0, "registering", nodes=count))
        )
        if len(binding.answered()) >= settings.num_clients:
            return binding
        if time.monotonic() > deadline:
            answered, wanted = len(binding.answered()), settings.num_clients
            raise TimeoutError(f"only {answered} of {wanted} nodes answered after {settings.node_wait:.0f}s")
        time.sleep(1.0)
        nodes = sorted(grid.get_node_ids())


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds and record them under the run's out dir."""
    settings = RunSettings.from_run_config(context.run_config)
    torch.set_num_threads(1)
    if hasattr(grid, "pull_interval"):  # the simulation's in-memory grid, in both governed and plain runs
        grid.pull_interval = PULL_INTERVAL
    recorder = Recorder(Path(settings.out_dir or "runs/flwr") / "server")
    try:
        _main(grid, settings, recorder)
    except BaseException as error:
        recorder.failed(error)
        raise


def _main(grid: Grid, settings: RunSettings, recorder: Recorder) -> None:
    started = time.monotonic()
    task = get_task(settings.task)
    plugin = get_strategy(settings.strategy, settings.strategy_options)
    test = task.test_data(settings.seed)

    def evaluate(arrays: Arrays) -> dict[str, float]:
        model = plugin.build(task, settings.seed, arrays)
        metrics = task.evaluate(model, test)
        metrics |= task.group_metrics(model, test, settings.seed, settings.num_clients, settings.partition)
        return metrics | plugin.extra_metrics(task, model, test)

    def server_update(server_round: int, state: Arrays) -> Arrays:
        return plugin.server_update(task, settings.seed, server_round, state)

    initial = plugin.initial_state(task, settings.seed)
    recorder.event(0, "waiting for nodes", expected=settings.num_clients)
    nodes = _wait_for_nodes(grid, settings.num_clients, settings.node_wait)
    if settings.governance:
        root = read_ca(settings.gateway_ca)
        gateway = GatewayClient(settings.gateway, root_certificates=root, timeout=600, reconnect=True)
        gateway.wait_ready()
        recorder.event(0, "binding nodes")
        binding = _bind(grid, settings, gateway, nodes, recorder)
        recorder.event(0, "nodes bound", nodes=len(binding.nodes))
        final, vote_mode, task_address, chain_id = _governed(
            grid, settings, plugin, gateway, binding, recorder, evaluate, initial, server_update
        )
    else:
        binding = bind_nodes(grid, nodes, None)
        final = _plain(grid, settings, plugin, binding, recorder, evaluate, initial, server_update)
        vote_mode, task_address, chain_id = None, None, None
    final_metrics = evaluate(final)
    if task.local_test:
        recorder.event(settings.rounds, "client reports")
        final_metrics |= _client_reports(grid, binding, final)
    recorder.finish(
        RunSummary(
            strategy=settings.strategy,
            task=settings.task,
            governance=settings.governance,
            seed=settings.seed,
            clients=settings.num_clients,
            vote_mode=vote_mode,
            nodes=binding.nodes,
            partitions=binding.partitions,
            initial_metrics=evaluate(initial),
            final_metrics=final_metrics,
            task_address=task_address,
            chain_id=chain_id,
            wall_s=round(time.monotonic() - started, 3),
        )
    )


def _client_reports(grid: Grid, binding: Binding, state: Arrays, timeout: float = 120.0) -> dict[str, float]:
    """Each node's own evaluation of the final state on its local test set, averaged (e.g. personalised accuracy)."""
    messages = [
        Message(
            content=RecordDict(
                {"arrays": to_record(state), "config": ConfigRecord({"server-round": 0, "action": "report"})}
            ),
            message_type=MessageType.EVALUATE,
            dst_node_id=node,
        )
        for node in sorted(binding.nodes.values())
    ]
    values: dict[str, list[float]] = {}
    answered = 0
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            continue  # a silent or failed node reports nothing
        answered += 1
        for key, value in reply.content["metrics"].items():
            values.setdefault(key, []).append(float(value))  # type: ignore[arg-type]
    return {key: sum(v) / len(v) for key, v in values.items()} | {"reporting_clients": float(answered)}


def _governed(
    grid: Grid,
    settings: RunSettings,
    plugin: FedledgerStrategy,
    gateway: GatewayClient,
    binding: Binding,
    recorder: Recorder,
    evaluate: Callable[[Arrays], dict[str, float]],
    initial: Arrays,
    server_update: Callable[[int, Arrays], Arrays],
) -> tuple[Arrays, str, str, int]:
    view = gateway.task()
    info = gateway.task_info()
    coordinator = coordinator_key(settings.keys, settings.coordinator_keystore)
    if coordinator.address != view.config.coordinator:
        raise RuntimeError(f"this ServerApp's key {coordinator.address} is not the task's coordinator")
    start = _starting_state(gateway, coordinator, info.current_round, info.global_model_hash, initial)
    strategy = GovernedStrategy(
        plugin,
        gateway,
        coordinator,
        binding,
        recorder,
        evaluate,
        server_update,
    )
    start = strategy.publish_settled(info.current_round, start)  # a round `fedledger round settle` finalized
    final = strategy.run(grid, start, settings.rounds, first_round=info.current_round + 1)
    return final, view.config.vote_mode.label, view.task_address, view.chain_id


def _starting_state(
    gateway: GatewayClient, coordinator: LocalAccount, played: int, global_hash: bytes, initial: Arrays
) -> Arrays:
    """The model the task's next round starts from.

    A fresh task (no round ``played``) must hold this run's ``initial`` model, which is stored so
    anyone can fetch it. A task that already played rounds continues from the global model the
    chain records, fetched from the blob store by its hash (a coordinator restarted mid-task).
    """
    if played:
        return codec.decode(gateway.fetch_blob(global_hash))
    blob = codec.encode(initial)
    if global_hash != keccak256(blob):
        raise RuntimeError(
            f"the task's global model 0x{global_hash.hex()} is not this run's initial model 0x{keccak256(blob).hex()}"
        )
    gateway.store_blob(coordinator, blob)
    return initial


def _plain(
    grid: Grid,
    settings: RunSettings,
    plugin: FedledgerStrategy,
    binding: Binding,
    recorder: Recorder,
    evaluate: Callable[[Arrays], dict[str, float]],
    initial: Arrays,
    server_update: Callable[[int, Arrays], Arrays],
) -> Arrays:
    """The same strategy with Flower's own loop: sampled nodes train, the server evaluates.

    The aggregate of a round covers the arrays the replies carried (all of them, or e.g.
    FedSTO's backbone in its phase 1): the others keep their values, then the server's own
    step (:meth:`~FedledgerStrategy.server_update`) runs on it.
    """
    strategy = plugin.server_strategy(fraction_train=settings.proposer_share)
    address_of = {node: address for address, node in binding.nodes.items()}
    model_bytes = len(codec.encode(initial))
    trainers: dict[int, list[str]] = {}
    original = strategy.configure_train

    current = {"state": initial}
    original_aggregate = strategy.aggregate_train

    def configure_train(server_round: int, arrays: ArrayRecord, config: object, grid_: Grid) -> list[Message]:
        current["state"] = from_record(arrays)
        messages = list(original(server_round, arrays, config, grid_))  # type: ignore[arg-type]
        trainers[server_round] = sorted(address_of.get(m.metadata.dst_node_id, "?") for m in messages)
        recorder.event(server_round, "training", proposers=len(messages))
        return messages

    def aggregate_train(server_round: int, replies: object) -> tuple[ArrayRecord | None, MetricRecord | None]:
        aggregated, metrics = original_aggregate(server_round, replies)  # type: ignore[arg-type]
        if aggregated is None:
            return None, metrics
        merged = current["state"] | from_record(aggregated)  # unchanged arrays keep their place
        return to_record(server_update(server_round, merged)), metrics

    strategy.configure_train = configure_train  # type: ignore[method-assign]
    strategy.aggregate_train = aggregate_train  # type: ignore[method-assign]
    round_started = time.monotonic()

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        nonlocal round_started
        metrics = evaluate(from_record(arrays))
        if server_round > 0:
            trained = trainers.get(server_round, [])
            recorder.round_done(
                RoundResult(
                    round=server_round,
                    accepted=None,
                    tally=None,
                    proposers=trained,
                    rejected=[],
                    voters=[],
                    metrics=metrics,
                    bytes_up=model_bytes * len(trained),
                    bytes_down=model_bytes * len(trained),
                    wall_s=round(time.monotonic() - round_started, 3),
                )
            )
        round_started = time.monotonic()
        return MetricRecord(metrics)

    result = strategy.start(grid, to_record(initial), num_rounds=settings.rounds, evaluate_fn=evaluate_fn)
    return from_record(result.arrays) if result.arrays is not None else initial
