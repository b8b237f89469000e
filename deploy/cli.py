"""``fedledger deploy``: deploy the contracts and create a task, on the embedded chain or a node."""

from __future__ import annotations

import argparse
import contextlib
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from fedledger.config import DEFAULT_POOL_WEI
from fedledger.errors import CommandError
from fedledger.tables import eth, fitted_table

if TYPE_CHECKING:  # the chain libraries are heavy: import them only when a command runs
    from web3 import Web3

    from fedledger.contracts.types import TaskConfig

    from .manifest import DeploymentManifest

console = Console()
err_console = Console(stderr=True)

DEPLOY_GAS_RESERVE = 10**17
"""Wei a deployer should hold beyond the pool for the deployment's gas (it uses ~0.02 ETH on anvil)."""

UNSET_MODEL_LABEL = b"fedledger:initial-model-unset"
"""keccak256 of this is the initial model hash when none is given (a task for contract tests)."""


def ether(text: str) -> int:
    """Parse an amount in ether (``"1.5"``) into wei."""
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise argparse.ArgumentTypeError(f"not an amount of ether: {text!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError(f"not an amount of ether: {text!r}")
    wei = amount * 10**18
    if wei != wei.to_integral_value():
        raise argparse.ArgumentTypeError(f"more than 18 decimals: {text!r}")
    return int(wei)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``deploy`` command."""
    cmd = commands.add_parser(
        "deploy",
        help="deploy the contracts and create a task",
        description="Deploy TaskCodeStore, FLTaskFactory and one FLTask; print or write the manifest.",
    )
    where = cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--embedded", action="store_true", help="deploy on a throw-away in-process eth-tester chain")
    where.add_argument("--rpc-url", help="JSON-RPC URL of the node to deploy to, e.g. http://127.0.0.1:8545")
    cmd.add_argument("--key-file", type=Path, help="deployer key: eth-account keystore or hex key file")
    cmd.add_argument("--out", type=Path, help="write the manifest here (e.g. deployments/local.json)")
    cmd.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    add_task_options(cmd)
    cmd.set_defaults(handler=_deploy)


_TASK_FLAGS = (
    "strategy",
    "total_rounds",
    "vote_mode",
    "stake_weighted",
    "min_stake",
    "max_committee",
    "proposer_share_bps",
    "slash_rate_bps",
    "vote_rule",
    "voter_reward_bps",
    "vote_tolerance_bps",
    "reviewers_per_update",
    "quorum",
    "canary_rate_bps",
    "training_duration",
    "voting_duration",
    "reveal_duration",
    "exit_delay",
    "coordinator",
    "initial_model_hash",
)


def add_task_options(cmd: argparse.ArgumentParser) -> None:
    """Options that set TaskConfig fields (shared by ``deploy`` and ``gateway serve --embedded``)."""
    group = cmd.add_argument_group("task parameters")
    group.add_argument("--task-config", type=Path, help="JSON file with TaskConfig fields (flags override it)")
    group.add_argument("--strategy", help="aggregation strategy name (default fedavg)")
    group.add_argument(
        "--strategy-options",
        default="",
        metavar="KEY=VALUE,...",
        help="the strategy's hyper-parameters (for --initial-model)",
    )
    group.add_argument("--rounds", type=int, dest="total_rounds", help="total rounds (default 5)")
    group.add_argument("--vote-mode", choices=["per_update", "aggregate"], help="what voters judge")
    group.add_argument("--stake-weighted", action="store_true", default=None, help="weigh votes by stake")
    group.add_argument("--min-stake", type=ether, help="minimum stake in ether (default 1)")
    group.add_argument("--max-committee", type=int, help="largest committee per round (default 10)")
    group.add_argument("--proposer-share-bps", type=int, help="share of the committee that proposes (default 5000)")
    group.add_argument(
        "--slash-rate-bps",
        type=int,
        help=f"stake share a bad verdict takes, times its margin (default {_task_default('slash_rate_bps')})",
    )
    group.add_argument(
        "--vote-rule",
        help="how voters judge an update: share, full, loo or reference (default: the strategy's; fedavg: reference)",
    )
    group.add_argument(
        "--voter-reward-bps", type=int, help="the good voters' share of each round reward (default 1000)"
    )
    group.add_argument("--vote-tolerance-bps", type=int, help="eps of the share/full/loo rules (default 500)")
    group.add_argument(
        "--reviewers-per-update",
        type=int,
        metavar="K",
        help=f"voters assigned to each update; 0: every voter judges every update (default {_default_reviewers()})",
    )
    group.add_argument(
        "--quorum",
        type=int,
        help="informed votes an update needs for a verdict, at most K (default "
        f"{_task_default('quorum')}, lowered to what the committee allows): without them it is neither paid nor "
        "slashed and stays out of the model",
    )
    group.add_argument(
        "--canary-rate-bps",
        type=int,
        help=f"chance that a proposal owes a canary, bps (default {_task_default('canary_rate_bps')}: off; "
        f"{_canary_study_rate()} makes accept-all voters lose, docs/voting.md 'Canaries'; fedledger's own nodes "
        "do not declare canaries yet)",
    )
    group.add_argument("--training-duration", type=int, help="seconds for proposers (default 600)")
    group.add_argument("--voting-duration", type=int, help="seconds for vote commitments (default 300)")
    group.add_argument("--reveal-duration", type=int, help="seconds for reveals (default 300)")
    group.add_argument("--exit-delay", type=int, help="seconds between exit request and withdrawal (default 3600)")
    group.add_argument("--coordinator", help="coordinator address")
    group.add_argument("--initial-model-hash", help="keccak256 of the initial model's canonical bytes (0x...)")
    group.add_argument(
        "--initial-model", metavar="TASK:SEED", help="hash of a task's initial model, e.g. digits:0 (for flwr run)"
    )
    group.add_argument("--pool", type=ether, default=DEFAULT_POOL_WEI, help="reward pool in ether (default 10)")


def _canary_study_rate() -> int:
    from fedledger.contracts.types import CANARY_STUDY_RATE_BPS

    return CANARY_STUDY_RATE_BPS


def _task_default(name: str) -> int:
    """The default of TaskConfig field ``name`` (the one place it lives)."""
    from fedledger.contracts.types import TaskConfig

    return int(TaskConfig.model_fields[name].default)


def _default_reviewers() -> int:
    return _task_default("reviewers_per_update")


def task_fields(args: argparse.Namespace) -> dict[str, Any]:
    """TaskConfig fields from ``--task-config`` and the task flags, with a default initial model hash."""
    from eth_utils import keccak

    fields: dict[str, Any] = {}
    if args.task_config is not None:
        try:
            loaded = json.loads(args.task_config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read task config {args.task_config}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise CommandError(f"task config {args.task_config} must hold a JSON object")
        fields.update(loaded)
    fields.update({name: getattr(args, name) for name in _TASK_FLAGS if getattr(args, name) is not None})
    if getattr(args, "initial_model", None):
        fields["initial_model_hash"] = _task_model_hash(
            args.initial_model, args.strategy or "fedavg", getattr(args, "strategy_options", "")
        )
    fields.setdefault("initial_model_hash", keccak(UNSET_MODEL_LABEL))
    fields["vote_rule"] = _vote_rule(str(fields.get("strategy") or "fedavg"), fields.get("vote_rule"))
    return fields


def _vote_rule(strategy: str, rule: object) -> str:
    """The task's vote rule: the one given, checked against the strategy, or the strategy's default."""
    from fedledger.aggregation.registry import get_strategy
    from fedledger.client.voting import check_rule

    try:
        plugin = get_strategy(strategy)
        name = str(rule) if rule else plugin.default_vote_rule
        check_rule(name, plugin)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return name


def _task_model_hash(spec: str, strategy: str = "fedavg", options: str = "") -> bytes:
    """keccak256 of the canonical bytes of the strategy's initial state for task TASK and SEED."""
    from fedledger import codec
    from fedledger.aggregation.registry import get_strategy
    from fedledger.server.gateway.blobstore import keccak256
    from fedledger.simulation.tasks import get_task

    name, _, seed = spec.partition(":")
    if not seed.isdigit():
        raise CommandError(f"--initial-model takes TASK:SEED, e.g. digits:0, got {spec!r}")
    try:
        task = get_task(name)
        plugin = get_strategy(strategy, options)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return keccak256(codec.encode(plugin.initial_state(task, int(seed))))


def _task_config(args: argparse.Namespace, deployer: str) -> TaskConfig:
    from eth_utils import keccak

    from fedledger.contracts.types import TaskConfig

    fields = task_fields(args)
    fields.setdefault("coordinator", deployer)
    if "config_hash" not in fields:
        described = {k: v for k, v in fields.items() if k != "coordinator"}
        fields["config_hash"] = keccak(text=json.dumps(described, sort_keys=True, default=str))
    return TaskConfig.model_validate(fields)


def _deployer(args: argparse.Namespace) -> tuple[Web3, str]:
    from eth_account import Account

    from fedledger.keys import load_key

    from .anvil import ANVIL_DEV_KEY
    from .chain import connect, embedded_web3, use_account

    if args.embedded:
        w3 = embedded_web3()
        if args.key_file is not None:
            return w3, _funded_key(w3, args.key_file, w3.eth.accounts[0])
        return w3, w3.eth.accounts[0]
    w3 = connect(args.rpc_url)
    if args.key_file is not None:
        return w3, use_account(w3, load_key(args.key_file))
    err_console.print(
        "[bold yellow]WARNING: no --key-file given, deploying with anvil's first DEV KEY. Its private key is "
        "public: use it on a local dev chain only.[/]"
    )
    return w3, use_account(w3, Account.from_key(ANVIL_DEV_KEY))


def _funded_key(w3: Web3, key_file: Path, funder: str) -> str:
    from fedledger.keys import load_key

    from .chain import use_account

    address = use_account(w3, load_key(key_file))
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": funder, "to": address, "value": 10**22}))
    return address


def _deploy(args: argparse.Namespace) -> int:
    from .deployer import deploy_task

    w3, deployer = _deployer(args)
    config = _task_config(args, deployer)
    balance = w3.eth.get_balance(deployer)
    if balance < args.pool + DEPLOY_GAS_RESERVE:
        raise CommandError(
            f"deployer {deployer} holds {balance / 10**18} ETH: it needs the pool of "
            f"{args.pool / 10**18} ETH plus about {DEPLOY_GAS_RESERVE / 10**18} ETH of gas (lower --pool or fund it)"
        )
    with contextlib.nullcontext() if args.json else console.status("deploying ..."):
        manifest, _task = deploy_task(w3, deployer, config, pool_wei=args.pool, rpc_url=args.rpc_url)
    if args.out is not None:
        manifest.save(args.out)
    if args.json:
        print(manifest.model_dump_json(indent=2))
    else:
        _print_summary(manifest, args.out)
    return 0


def _print_summary(manifest: DeploymentManifest, out: Path | None) -> None:
    rows = [(name, record.address, f"{record.gas_used:,}") for name, record in manifest.records()]
    title = f"deployed on chain {manifest.chain_id}"
    console.print(fitted_table(title, ("contract", "address", "gas"), rows, console=console, right=("gas",)))
    cfg = manifest.task_config
    console.print(
        f"task: strategy={cfg.strategy} rounds={cfg.total_rounds} vote_mode={cfg.vote_mode.label} "
        f"stake_weighted={cfg.stake_weighted} pool={eth(manifest.reward_pool_wei)} ETH"
    )
    console.print(f"coordinator: {cfg.coordinator}")
    if out is not None:
        console.print(f"manifest written to {out}")
