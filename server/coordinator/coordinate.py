"""The coordinator of a live federation: a Flower SuperLink that nodes join, and the governed ServerApp on it.

``fedledger coordinate`` checks the deployed task through the gateway (this key is its
coordinator; a fresh task starts from this run's initial model, a task that already played
settled rounds continues from the global model on chain), starts a SuperLink (deployment
mode) on 127.0.0.1, submits the governed app with ``flwr run`` and relays its progress until
the last round. Every process it started (SuperLink, ServerApp, ``flwr``) is stopped at the end,
also on Ctrl-C or error, by PID and run marker.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from fedledger import codec
from fedledger.config import RunSettings
from fedledger.errors import CommandError
from fedledger.keys import PASSWORD_ENV, load_key, read_password
from fedledger.processes import ManagedProcess, kill_marked, new_marker
from fedledger.server.gateway.blobstore import keccak256
from fedledger.server.gateway.client import GatewayClient, read_ca

from .flower import (
    SuperLinkSecurity,
    failure_cause,
    flower_env,
    flwr_run_command,
    follow_run,
    register_nodes,
    start_superlink,
    write_app,
)
from .results import RoundResult, RunSummary, read_rounds
from .settings import CoordinatorOptions

STARTUP_TIMEOUT = 120.0


class CoordinatorError(CommandError):
    """The live run could not start or complete."""


Progress = Callable[[dict[str, object]], None]


class Coordinator:
    """One ``fedledger coordinate`` run."""

    def __init__(self, options: CoordinatorOptions, on_event: Progress | None = None) -> None:
        """Prepare (nothing starts before :meth:`run`)."""
        self.options = options
        self.on_event = on_event or (lambda _event: None)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = (options.out or Path("runs") / f"live-{stamp}").resolve()
        self.marker = new_marker()
        self.processes: list[ManagedProcess] = []
        self.security = SuperLinkSecurity(options.tls_ca, options.tls_cert, options.tls_key, options.allow_nodes)

    def run(self) -> tuple[RunSummary, list[RoundResult]]:
        """Check the task, start the SuperLink, run the rounds, stop everything; return the results."""
        if (self.out / "server" / "summary.json").exists():
            raise CoordinatorError(f"{self.out} already holds a finished run; choose another --out")
        password = os.environ.get(PASSWORD_ENV) or read_password(f"password for {self.options.keystore}: ")
        settings = self._settings(password)
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            address = self._start_superlink(password)
            allowed = self.security.allowed_nodes
            if allowed:
                env = flower_env(self.out / "flwr-home", self.marker)
                for line in register_nodes(self.out / "flwr-home", allowed, env):
                    self.on_event({"phase": "SuperNode key", "key": line})
            security = ("TLS" if self.security.tls else "plain text") + (", authenticated nodes" if allowed else "")
            self.on_event(
                {"phase": "SuperLink ready", "address": address, "nodes": settings.num_clients, "links": security}
            )
            app = write_app(self.out / "app", settings, "A fedledger live federation run")
            flwr = self._start("flwr-run", flwr_run_command(app), password)
            follow_run(flwr, self.out / "server", self.on_event, self.processes, CoordinatorError)
            summary_file = self.out / "server" / "summary.json"
            if not summary_file.exists():
                cause = failure_cause(self.out / "server", flwr)
                raise CoordinatorError(f"the run ended without results; see {flwr.log_file}:\n{cause}")
            summary = RunSummary.model_validate_json(summary_file.read_text(encoding="utf-8"))
            return summary, read_rounds(self.out / "server")
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop every process this run started (also their descendants)."""
        for process in reversed(self.processes):
            process.stop()
        kill_marked(self.marker)

    def _settings(self, password: str) -> RunSettings:
        """The run config, after checking the task behind the gateway accepts this coordinator and model."""
        from fedledger.aggregation.registry import get_strategy
        from fedledger.simulation.tasks import get_task

        o = self.options
        key = load_key(o.keystore, password)
        with GatewayClient(o.gateway, root_certificates=read_ca(o.tls_ca), timeout=30) as gateway:
            try:
                gateway.wait_ready(timeout=30)
            except TimeoutError as exc:
                raise CoordinatorError(f"no gateway answers at {o.gateway}: start `fedledger gateway serve`") from exc
            config = gateway.task().config
            info = gateway.task_info()
            if key.address != config.coordinator:
                raise CoordinatorError(
                    f"{o.keystore} holds {key.address}, but the task's coordinator is {config.coordinator}"
                )
            left = config.total_rounds - info.current_round
            rounds = o.rounds or left
            if not left or rounds > left:
                raise CoordinatorError(
                    f"the task has {left} of {config.total_rounds} rounds left after round {info.current_round}"
                )
            if info.current_round:
                _check_resumable(gateway, info.current_round)
        try:
            plugin = get_strategy(config.strategy, o.strategy_options)
            task = get_task(o.task or plugin.default_task)
        except ValueError as exc:
            raise CoordinatorError(str(exc)) from exc
        if not info.current_round:
            self.on_event({"phase": "preparing task", "task": task.name})
            initial = keccak256(codec.encode(plugin.initial_state(task, o.seed)))
            if initial != info.global_model_hash:
                raise CoordinatorError(
                    f"the task starts from model 0x{info.global_model_hash.hex()}, not from the initial model of "
                    f"{task.name} seed {o.seed} (0x{initial.hex()}): deploy with --initial-model {task.name}:{o.seed}"
                )
        else:
            self.on_event({"phase": "resuming", "after_round": info.current_round, "rounds": rounds})
        return RunSettings(
            task=task.name,
            strategy=config.strategy,
            strategy_options=o.strategy_options,
            num_clients=o.nodes,
            rounds=rounds,
            seed=o.seed,
            partition=o.partition,
            gateway=o.gateway,
            out_dir=str(self.out),
            local_epochs=o.local_epochs,
            lr=o.lr,
            batch_size=o.batch_size,
            node_wait=o.node_wait,
            coordinator_keystore=str(o.keystore.resolve()),
            gateway_ca=str(o.tls_ca.resolve()) if o.tls_ca is not None else "",
        )

    def _start(self, name: str, command: list[str], password: str) -> ManagedProcess:
        env = flower_env(self.out / "flwr-home", self.marker) | {PASSWORD_ENV: password}
        process = ManagedProcess(name, command, self.out / "logs" / f"{name}.log", env)
        self.processes.append(process)
        return process

    def _start_superlink(self, password: str) -> str:
        """A SuperLink in deployment mode; its ServerApp inherits the coordinator key's password.

        Its database outlives the run, so nodes that joined stay known when the coordinator (and
        with it the SuperLink) restarts: they reconnect instead of being refused.
        """
        o = self.options
        return start_superlink(
            lambda command: self._start("superlink", command, password), self.out / "flwr-home", o.superlink_db,
            o.port, simulation=False, timeout=STARTUP_TIMEOUT, error=CoordinatorError, host=o.host,
            security=self.security,
        )  # fmt: skip


def _check_resumable(gateway: GatewayClient, played: int) -> None:
    """Refuse to continue a task whose last round was cut off and not settled yet.

    The next run starts after the last round, which must be finalized: by the run that played it,
    or by ``fedledger round settle`` once its deadlines passed (a per-update round settled that
    way gets its aggregate published by the resuming ServerApp).
    """
    state = gateway.round(played)
    if state.phase != "FINALIZED":
        raise CoordinatorError(
            f"round {played} was cut off in phase {state.phase}: settle it with `fedledger round settle {played} "
            "--gateway ...` once its deadlines passed (anyone may), then run coordinate again"
        )
