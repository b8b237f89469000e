"""``fedledger simulate``: a governed federated run on one machine, with real processes.

1. the gateway runs as its own process (embedded chain, or a JSON-RPC node);
2. a Flower SuperLink in simulation mode runs as its own process, on free 127.0.0.1 ports;
3. ``flwr run`` submits the run; the ServerApp (coordinator) and the ClientApps (Ray actors,
   separate processes) talk to the gateway;
4. the run folder receives report.json, plots, logs and the chain's export for the audit.

Every process is started in its own session with a run marker, and stopped at the end, also
on Ctrl-C or error (see :mod:`fedledger.processes`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedledger import codec
from fedledger.config import DEFAULT_POOL_WEI, RunSettings
from fedledger.contracts.types import MAX_COMMITTEE, TaskConfig, quorum_bound
from fedledger.deploy.anvil import free_port
from fedledger.deploy.chain import dev_key
from fedledger.errors import CommandError
from fedledger.processes import ManagedProcess, kill_marked, new_marker
from fedledger.server.coordinator.flower import (
    failure_cause,
    flower_env,
    flwr_run_command,
    follow_run,
    start_superlink,
    wait_until,
    write_app,
)
from fedledger.server.coordinator.results import RoundResult, RunSummary, read_rounds
from fedledger.server.gateway.blobstore import keccak256

from .attacks import UPDATE_ATTACKS, VOTER_ATTACKS, AttackSpec, VoterAttackSpec, choose_attackers, parse_attack
from .partition import PartitionSpec
from .ray_head import start_ray_head
from .report import AttackersInfo, ChainInfo, Report, build_report
from .tasks import get_task

STARTUP_TIMEOUT = 120.0
RAY_START_FAILURES = ("The current node timed out during startup", "Timed out waiting for file")
"""What Flower's log says when Ray's own processes did not come up in time."""
RAY_START_ATTEMPTS = 5
RAY_RETRY_PAUSE = 5.0
"""Seconds between attempts: Ray's failures to start come in spells of a minute or two (CI once
saw three in a row, each with a C++ process that never wrote its first log line)."""


class SimulationOptions(BaseModel):
    """The options of ``fedledger simulate``."""

    model_config = ConfigDict(frozen=True)

    strategy: str = "fedavg"
    strategy_options: str = Field(default="", description="KEY=VALUE,... hyper-parameters of the strategy")
    task: str | None = Field(default=None, description="task name (default: the strategy's default task)")
    clients: int = Field(default=10, ge=2, le=127)
    rounds: int = Field(default=5, ge=1)
    partition: PartitionSpec = "iid"
    attackers: int = Field(default=0, ge=0)
    attack: AttackSpec = ""
    voter_attack: VoterAttackSpec = "honest"
    vote_mode: str = "per_update"
    vote_rule: str | None = Field(default=None, description="how voters judge updates (default: the strategy's)")
    reviewers_per_update: int | None = Field(
        default=None, ge=0, le=MAX_COMMITTEE - 1, description="voters per update (default: the task default)"
    )
    quorum: int | None = Field(
        default=None, ge=1, description="informed votes for a verdict (default: the task default, capped)"
    )
    governance: bool = True
    chain: str = "embedded"
    seed: int = Field(default=0, ge=0)
    out: Path | None = None
    json_path: Path | None = None
    local_epochs: int = Field(default=5, ge=1)
    lr: float = Field(default=0.1, gt=0)
    training_duration: int = Field(default=120, ge=5, description="seconds a proposer has (chain deadline)")
    voting_duration: int = Field(default=60, ge=5)
    reveal_duration: int = Field(default=60, ge=5)
    flush_window: float = Field(default=1.0, gt=0)
    ray_address: str | None = Field(
        default=None, description="attach to this running Ray cluster (host:port) instead of starting a head"
    )

    @field_validator("vote_mode")
    @classmethod
    def _vote_mode(cls, value: str) -> str:
        if value not in ("per_update", "aggregate"):
            raise ValueError("vote mode must be per_update or aggregate")
        return value

    @field_validator("chain")
    @classmethod
    def _chain(cls, value: str) -> str:
        if value != "embedded" and not value.startswith(("http://", "https://")):
            raise ValueError("--chain is 'embedded' or a JSON-RPC URL (http://...)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SimulationOptions:
        if self.attackers >= self.clients:
            raise ValueError(f"--attackers must be between 0 and {self.clients - 1} for {self.clients} clients")
        if self.attackers and not self.attack and self.voter_attack == "honest":
            raise ValueError(
                f"--attackers needs --attack ({', '.join(UPDATE_ATTACKS)}) "
                f"or --voter-attack ({', '.join(VOTER_ATTACKS)})"
            )
        if self.task is not None:
            from .tasks import task_names

            if self.task not in task_names():
                raise ValueError(f"unknown task {self.task!r}; known: {', '.join(task_names())}")
        from fedledger.aggregation.registry import get_strategy
        from fedledger.client.voting import check_rule

        plugin = get_strategy(self.strategy)
        task = get_task(self.task or plugin.default_task)
        if self.attack and parse_attack(self.attack).kind in plugin.unsupported_attacks:
            raise ValueError(f"the {self.attack} attack means nothing for {plugin.name} updates")
        if self.vote_rule is not None:
            check_rule(self.vote_rule, plugin)
        if not task.labeled_clients:
            if not plugin.semi_supervised:
                raise ValueError(f"{task.name} clients hold no labels: use a semi-supervised strategy (fedsto)")
            if self.attack == "label_flip":
                raise ValueError(f"{task.name} clients hold no labels to flip: use scale:FACTOR or silent")
        if self.reviewers_per_update is not None and self.reviewers_per_update > self.clients:
            raise ValueError(
                f"--reviewers-per-update must be between 0 and {self.clients} for {self.clients} clients "
                "(0: every voter judges every update; the committee caps larger values)"
            )
        if self.quorum is not None:
            committee = min(self.clients, MAX_COMMITTEE)
            k = self.reviewers_per_update
            if k is None:
                k = int(TaskConfig.model_fields["reviewers_per_update"].default)
            most = quorum_bound(committee, k)
            if self.quorum > most:
                raise ValueError(
                    f"--quorum must be between 1 and {most}: the reviewers an update can have "
                    f"(--reviewers-per-update {k}, {self.clients} clients)"
                )
        return self


Progress = Callable[[dict[str, object]], None]


class SimulationError(RuntimeError):
    """The simulation could not complete; the message points at the log to read."""


class Simulation:
    """One ``fedledger simulate`` run."""

    def __init__(self, options: SimulationOptions, on_event: Progress | None = None) -> None:
        """Prepare a run (nothing starts before :meth:`run`)."""
        self.options = options
        self.on_event = on_event or (lambda _event: None)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = (options.out or Path("runs") / stamp).resolve()
        self.marker = new_marker()
        self.processes: list[ManagedProcess] = []
        self.started = time.monotonic()
        self.ray_address: str | None = None
        self.ray_start_failures = 0
        """Starts of this run's Ray head that failed and were tried again."""

    # ---------------------------------------------------------------- public

    def run(self) -> Report:
        """Run everything, write the run folder, stop every process; return the report."""
        from fedledger.aggregation.registry import get_strategy

        try:
            get_strategy(self.options.strategy, self.options.strategy_options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.out.mkdir(parents=True, exist_ok=True)
        if (self.out / "server" / "summary.json").exists():
            raise CommandError(f"{self.out} already holds a finished run; choose another --out")
        (self.out / "run.json").write_text(json.dumps({"marker": self.marker, "pid": os.getpid()}) + "\n")
        try:
            settings = self._settings()
            gateway = self._launch_gateway(settings) if self.options.governance else None
            self._start_ray()  # while the gateway deploys
            superlink_address = self._start_superlink()
            if gateway is not None:
                settings = settings.model_copy(update={"gateway": self._await_gateway(gateway)})
            self._run_flower(settings, superlink_address)
            summary = RunSummary.model_validate_json((self.out / "server" / "summary.json").read_text())
            rounds = read_rounds(self.out / "server")
            money = self._export_chain(settings) if self.options.governance else {}
            report = self._report(settings, summary, rounds, money)
        finally:
            self.stop()
        from .plots import plot_run

        plot_run(report, rounds, self.out)
        report.save(self.out / "report.json")
        if self.options.json_path is not None:
            report.save(self.options.json_path)
        return report

    def stop(self) -> None:
        """Stop every process this run started (also their descendants)."""
        for process in reversed(self.processes):
            process.stop()
        kill_marked(self.marker)

    # ------------------------------------------------------------------ steps

    def _env(self) -> dict[str, str]:
        env = flower_env(self.out / "flwr-home", self.marker)
        if self.ray_address is not None:
            env["RAY_ADDRESS"] = self.ray_address  # Flower's ray.init attaches instead of starting Ray
        return env

    def _start_ray(self) -> None:
        """Attach to ``--ray-address``, or start a Ray head of this run's own (see :mod:`.ray_head`)."""
        if self.options.ray_address is not None:
            self.ray_address = self.options.ray_address
            return
        self.on_event({"phase": "starting Ray"})
        head, self.ray_address, self.ray_start_failures = start_ray_head(
            self._start,
            on_retry=lambda attempt, cause: self.on_event(
                {"phase": "Ray head did not start; starting it again", "attempt": attempt, "cause": cause}
            ),
        )
        # A failed attempt (e.g. its GCS port was taken meanwhile) is stopped: it must not count
        # as a process of the run that stopped unexpectedly.
        self.processes = [p for p in self.processes if p is head or not p.name.startswith("ray-head")]

    def _settings(self) -> RunSettings:
        o = self.options
        attackers = choose_attackers(o.clients, o.attackers, o.seed)
        self.attacker_ids = attackers
        return RunSettings(
            strategy=o.strategy,
            strategy_options=o.strategy_options,
            task=o.task or _default_task(o.strategy),
            num_clients=o.clients,
            rounds=o.rounds,
            seed=o.seed,
            partition=o.partition,
            attackers=",".join(map(str, attackers)),
            attack=o.attack if attackers else "",
            voter_attack=o.voter_attack if attackers else "honest",
            governance=o.governance,
            out_dir=str(self.out),
            local_epochs=o.local_epochs,
            lr=o.lr,
        )

    @property
    def reviewers_per_update(self) -> int:
        """Voters assigned to each update: the option, or the task default."""
        if self.options.reviewers_per_update is not None:
            return self.options.reviewers_per_update
        return int(TaskConfig.model_fields["reviewers_per_update"].default)

    @property
    def quorum(self) -> int:
        """Informed votes for a verdict: the option, or the task default lowered to what the committee allows."""
        config = TaskConfig(
            initial_model_hash=b"\1" * 32,
            coordinator=dev_key(0).address,
            max_committee=min(self.options.clients, MAX_COMMITTEE),
            reviewers_per_update=self.reviewers_per_update,
            quorum=self.options.quorum,
        )
        return config.quorum

    @property
    def vote_rule(self) -> str:
        """The task's vote rule: the one asked for, or the strategy's default."""
        from fedledger.aggregation.registry import get_strategy

        return self.options.vote_rule or get_strategy(self.options.strategy).default_vote_rule

    def _start(self, name: str, command: list[str], cwd: Path | None = None) -> ManagedProcess:
        process = ManagedProcess(name, command, self.out / "logs" / f"{name}.log", self._env(), cwd)
        self.processes.append(process)
        return process

    def _initial_model_hash(self, settings: RunSettings) -> str:
        """The hash of the strategy's initial state (building it also prepares the task, e.g. pretraining)."""
        from fedledger.aggregation.registry import get_strategy

        self.on_event({"phase": "preparing task", "task": settings.task})
        plugin = get_strategy(settings.strategy, settings.strategy_options)
        initial = plugin.initial_state(get_task(settings.task), settings.seed)
        return "0x" + keccak256(codec.encode(initial)).hex()

    def _task_flags(self, settings: RunSettings) -> list[str]:
        o = self.options
        return [
            "--strategy", o.strategy, "--rounds", str(o.rounds), "--vote-mode", o.vote_mode,
            "--max-committee", str(min(o.clients, MAX_COMMITTEE)), "--training-duration", str(o.training_duration),
            "--voting-duration", str(o.voting_duration), "--reveal-duration", str(o.reveal_duration),
            "--initial-model-hash", self._initial_model_hash(settings), "--vote-rule", self.vote_rule,
            "--reviewers-per-update", str(self.reviewers_per_update), "--quorum", str(self.quorum),
        ]  # fmt: skip

    def _launch_gateway(self, settings: RunSettings) -> ManagedProcess:
        self.on_event({"phase": "starting gateway"})
        data_dir = self.out / "gateway"
        command = [
            sys.executable,
            "-m",
            "fedledger.cli",
            "gateway",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
        ]
        command += ["--flush-window", str(self.options.flush_window), "--log-level", "WARNING"]
        if self.options.chain == "embedded":
            command += ["--embedded", "--dev-accounts", str(self.options.clients), *self._task_flags(settings)]
        else:
            command += self._prepare_rpc_chain(settings)
        return self._start("gateway", command)

    def _await_gateway(self, gateway: ManagedProcess) -> str:
        discovery = self.out / "gateway" / "gateway.json"
        wait_until(discovery.is_file, gateway, "the gateway", STARTUP_TIMEOUT, SimulationError)
        return str(json.loads(discovery.read_text())["address"])

    def _prepare_rpc_chain(self, settings: RunSettings) -> list[str]:
        """Deploy a task on the node (anvil's first dev key pays) and fund the dev keys."""
        from eth_account import Account

        from fedledger.deploy.anvil import ANVIL_DEV_KEY
        from fedledger.deploy.chain import connect, fund, use_account
        from fedledger.deploy.deployer import deploy_task

        o = self.options
        w3 = connect(o.chain)
        deployer = use_account(w3, Account.from_key(ANVIL_DEV_KEY))
        fund(w3, deployer, [dev_key(i).address for i in range(o.clients + 1)], 10 * 10**18)
        config = TaskConfig(
            initial_model_hash=self._initial_model_hash(settings),
            strategy=o.strategy,
            total_rounds=o.rounds,
            vote_mode=o.vote_mode,
            max_committee=min(o.clients, MAX_COMMITTEE),
            reviewers_per_update=self.reviewers_per_update,
            quorum=self.quorum,
            training_duration=o.training_duration,
            voting_duration=o.voting_duration,
            reveal_duration=o.reveal_duration,
            coordinator=dev_key(0).address,
            vote_rule=self.vote_rule,
        )
        manifest, _ = deploy_task(w3, deployer, config, pool_wei=DEFAULT_POOL_WEI, rpc_url=o.chain)
        path = self.out / "deployment.json"
        manifest.save(path)
        key_file = self.out / "relayer.key"
        key_file.write_text(ANVIL_DEV_KEY)  # anvil's public dev key: local chains only
        return ["--rpc-url", o.chain, "--deployment", str(path), "--relayer-key-file", str(key_file)]

    def _start_superlink(self) -> str:
        self.on_event({"phase": "starting Flower"})
        home = self.out / "flwr-home"
        return start_superlink(
            lambda command: self._start("superlink", command), home, home / "state.db", free_port(),
            simulation=True, timeout=STARTUP_TIMEOUT, error=SimulationError,
        )  # fmt: skip

    def _write_app(self, settings: RunSettings) -> Path:
        return write_app(self.out / "app", settings, "A fedledger simulation run")

    def _run_flower(self, settings: RunSettings, superlink: str) -> None:
        """``flwr run`` the app; again (up to ``RAY_START_ATTEMPTS``) if Ray failed to start.

        On 2 loaded cores Ray's raylet sometimes misses its hard-coded 30 s start-up window
        ("The current node timed out during startup"). No node can answer the binding request
        without Ray, so nothing was registered on chain; the run is simply started again
        against the same SuperLink and gateway. Once a binding completed, a failure is final.
        """
        app = self._write_app(settings)
        summary = self.out / "server" / "summary.json"
        for attempt in range(1, RAY_START_ATTEMPTS + 1):
            flwr = self._flower_attempt(app, superlink, attempt)
            if summary.exists():
                return
            log = flwr.log_file.read_text(errors="replace") if flwr.log_file.is_file() else ""
            ray_failed = any(m in log for m in RAY_START_FAILURES)
            if attempt < RAY_START_ATTEMPTS and ray_failed and not self._nodes_bound():
                self.on_event({"phase": "Ray did not start; starting the run again"})
                self.processes.remove(flwr)
                time.sleep(RAY_RETRY_PAUSE)
                continue
            cause = failure_cause(self.out / "server", flwr)
            raise SimulationError(
                f"the Flower run ended without results (exit code {flwr.process.returncode}); "
                f"see {flwr.log_file}:\n{cause}"
            )

    def _nodes_bound(self) -> bool:
        progress = self.out / "server" / "progress.jsonl"
        return progress.is_file() and '"nodes bound"' in progress.read_text(encoding="utf-8")

    def _flower_attempt(self, app: Path, superlink: str, attempt: int) -> ManagedProcess:
        """One ``flwr run``, relaying the ServerApp's progress until it finishes or stops."""
        self.on_event({"phase": "starting run", "superlink": superlink})
        command = flwr_run_command(app, f"num-supernodes={self.options.clients}", "client-resources-num-cpus=1")
        flwr = self._start("flwr-run" if attempt == 1 else f"flwr-run-{attempt}", command)
        follow_run(flwr, self.out / "server", self.on_event, self.processes, SimulationError)
        return flwr

    def _export_chain(self, settings: RunSettings) -> dict[str, tuple[int, int, int, int]]:
        """Save the chain's events and balances for `fedledger audit --run`; return each participant's money."""
        from fedledger.server.gateway.client import GatewayClient

        from .export import export_chain

        self.on_event({"phase": "exporting chain"})
        with GatewayClient(settings.gateway, timeout=120) as client:
            return export_chain(client, self.out / "chain")

    def _report(
        self,
        settings: RunSettings,
        summary: RunSummary,
        rounds: list[RoundResult],
        money: dict[str, tuple[int, int, int, int]],
    ) -> Report:
        attacker_addresses = [a for a, pid in summary.partitions.items() if pid in settings.attacker_ids()]
        attackers = AttackersInfo(
            count=len(self.attacker_ids),
            attack=settings.attack or None,
            voter_attack=settings.voter_attack,
            addresses=sorted(attacker_addresses),
        )
        if not self.options.governance:
            chain = ChainInfo(kind="none", chain_id=None, task=None)
        else:
            kind = "embedded" if self.options.chain == "embedded" else "rpc"
            chain = ChainInfo(kind=kind, chain_id=summary.chain_id, task=summary.task_address)
        wall = time.monotonic() - self.started
        return build_report(summary, rounds, attackers, chain, money, wall, self.vote_rule)


def _default_task(strategy: str) -> str:
    from fedledger.aggregation.registry import get_strategy

    return get_strategy(strategy).default_task
