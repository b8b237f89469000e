"""A live federation with real processes on 127.0.0.1, driven by the commands of docs/live-federation.md.

anvil (`chain up`), `deploy`, `gateway serve --rpc-url`, `coordinate` (SuperLink + governed
ServerApp) and three `node join` SuperNodes run three rounds. Between rounds 1 and 2 the gateway
is restarted; in round 2 the proposer's node is killed (SIGKILL of all its processes), then the
coordinator with its SuperLink and ServerApp (a crash of its host). `round settle 2` finishes the
round once its deadlines passed (the contract slashes the missing proposer); a second
`coordinate` resumes with round 3, which the surviving nodes play after reconnecting. `audit
verify` against the chain then finds no disagreement and the task's books balance. The survivors
finally reconnect to a restarted SuperLink and leave cleanly on Ctrl-C. Every process is stopped
by PID at the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.deploy.anvil import free_port
from fedledger.keys import create_keystore
from fedledger.processes import MARKER_ENV, ManagedProcess, kill_marked, marked_pids, new_marker
from fedledger.server.coordinator.flower import superlink_command
from fedledger.server.gateway.client import GatewayClient, event_args

from ..conftest import assert_books_balance, fedledger, require_anvil

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
TRAINING, VOTING, REVEAL = 20, 20, 20
ETH = 10**18
RECONNECTED = "Connection successful after"
FAILED = "Connection attempt failed"
"""What a SuperNode logs when it lost the SuperLink, and when it reached it again."""


class Federation:
    """The processes of the walk-through, each with a marker of its own so it can be killed whole."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ) | {"FEDLEDGER_KEY_PASSWORD": PASSWORD, "FLWR_HOME": str(root / "flwr-home")}
        self.processes: dict[str, ManagedProcess] = {}
        self.markers: dict[str, str] = {}
        self.rpc_port, self.gateway_port, self.superlink_port = free_port(), free_port(), free_port()

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    def run(self, *args: str) -> str:
        done = fedledger(*args, env=self.env, cwd=self.root)
        assert done.returncode == 0, f"fedledger {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str, *args: str) -> ManagedProcess:
        return self.start_command(name, [sys.executable, "-m", "fedledger.cli", *args])

    def start_command(self, name: str, command: list[str]) -> ManagedProcess:
        self.markers[name] = marker = new_marker()
        env = self.env | {MARKER_ENV: marker}
        process = ManagedProcess(name, command, self.root / "logs" / f"{name}.log", env, cwd=self.root)
        self.processes[name] = process
        return process

    def start_gateway(self, name: str) -> ManagedProcess:
        process = self.start(
            name, "gateway", "serve", "--rpc-url", self.rpc_url, "--deployment", "deployments/local.json",
            "--relayer-key-file", "keys/coordinator.json", "--port", str(self.gateway_port), "--flush-window", "1",
        )  # fmt: skip
        with GatewayClient(self.gateway) as client:
            client.wait_ready(timeout=60)
        return process

    def kill(self, name: str) -> None:
        """SIGKILL every process of ``name`` and their descendants at once (a crash), then wait until they are gone.

        Descendants count too: the coordinator's SuperLink and ServerApp carry a marker of its own.
        """
        pids = marked_pids(self.markers[name])
        pids += [child for pid in pids for child in descendants(pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it may have exited since it was listed
                os.kill(pid, signal.SIGKILL)
        kill_marked(self.markers[name])

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        for marker in self.markers.values():
            kill_marked(marker)
        fedledger("chain", "down", env=self.env, cwd=self.root)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.tail(30)}" for name, p in self.processes.items())


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first found through /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    require_anvil()
    fed = Federation(tmp_path)
    try:
        yield fed
    finally:
        fed.stop_all()
        left = [name for name, marker in fed.markers.items() if marked_pids(marker)]
        assert not left, f"processes left behind: {left}"


def progress(out: Path) -> list[dict]:
    path = out / "server" / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_for(condition: object, what: str, fed: Federation, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert fed.processes["coordinator"].running(), f"the coordinator stopped before {what}:\n{fed.logs()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f}s:\n{fed.logs()}"
        time.sleep(0.2)


def wait_for_logs(logs: dict[str, Path], before: dict[str, int], line: str, timeout: float = 120) -> None:
    """Wait until every log holds more copies of ``line`` than ``before`` says."""
    deadline = time.monotonic() + timeout
    while any(log.read_text(errors="replace").count(line) <= before[name] for name, log in logs.items()):
        assert time.monotonic() < deadline, f"no new {line!r} in {sorted(logs)} after {timeout:.0f}s"
        time.sleep(0.3)


def settle(fed: Federation, round_: int, timeout: float = 180) -> str:
    """``round settle`` until it finalizes: it refuses while a deadline is ahead, and each call ends what is due."""
    deadline = time.monotonic() + timeout
    while True:
        done = fedledger(
            "round", "settle", str(round_), "--gateway", fed.gateway, "--keystore", "keys/node-0.json",
            env=fed.env, cwd=fed.root,
        )  # fmt: skip
        if done.returncode == 0:
            return done.stdout
        assert "until its deadline" in done.stderr, done.stderr
        assert time.monotonic() < deadline, f"round {round_} not settled after {timeout:.0f}s: {done.stderr}"
        time.sleep(2)


def test_three_rounds_survive_gateway_restart_killed_node_and_crashed_coordinator_then_audit_clean(
    federation: Federation,
) -> None:
    fed = federation
    started = time.monotonic()
    url = fed.run("chain", "up", "--port", str(fed.rpc_port), "--state", "chain-state.json").strip()
    assert url == fed.rpc_url
    keystores = [f"keys/{name}.json" for name in ("coordinator", "node-0", "node-1", "node-2")]
    fed.run("node", "init", "--keystore", keystores[0])
    for keystore in keystores[1:]:  # what `node init` does, without three more interpreter start-ups
        create_keystore(fed.root / keystore, PASSWORD)
    fed.run("chain", "fund", "--rpc-url", url, *keystores)
    fed.run(
        "deploy", "--rpc-url", url, "--key-file", "keys/coordinator.json", "--out", "deployments/local.json",
        "--initial-model", "digits:0", "--rounds", "3", "--max-committee", "3", "--pool", "5",
        "--training-duration", str(TRAINING), "--voting-duration", str(VOTING), "--reveal-duration", str(REVEAL),
    )  # fmt: skip
    fed.start_gateway("gateway")
    out = fed.root / "runs" / "live"
    coordinate = ("coordinate", "--gateway", fed.gateway, "--keystore", "keys/coordinator.json", "--local-epochs", "1")
    fed.start("coordinator", *coordinate, "--nodes", "3", "--port", str(fed.superlink_port), "--out", str(out))
    nodes = {}
    for i in range(3):
        nodes["0x" + json.loads((fed.root / "keys" / f"node-{i}.json").read_text())["address"].lower()] = f"node-{i}"
        fed.start(
            f"node-{i}", "node", "join", "--gateway", fed.gateway, "--superlink", f"127.0.0.1:{fed.superlink_port}",
            "--keystore", f"keys/node-{i}.json", "--data", f"digits:{i}/3", "--stay",
            "--log-file", str(fed.root / "logs" / f"supernode-{i}.log"),
        )  # fmt: skip
    setup_s = time.monotonic() - started

    # Between the rounds: the gateway goes away and comes back on the same port and folders.
    wait_for(lambda: any(e["phase"] == "done" and e["round"] == 1 for e in progress(out)), "round 1", fed)
    fed.processes["gateway"].stop()
    fed.start_gateway("gateway-restarted")

    # Mid-round 2: the proposer's node crashes before it could submit, then the coordinator's host.
    wait_for(lambda: any(e["phase"] == "training" and e["round"] == 2 for e in progress(out)), "round 2", fed)
    with GatewayClient(fed.gateway, timeout=30) as client:
        proposer = client.round(2).proposers[0].address
        fed.kill(nodes[proposer.lower()])
        victim_stake = int(client.account(proposer).stake_wei)
    fed.kill("coordinator")
    with GatewayClient(fed.gateway, timeout=30) as client:
        assert client.round(2).phase == "TRAINING"  # cut off: nothing advances it now
    settled = settle(fed, 2)  # one line: each earlier call ended the phases then due
    assert settled.startswith("round 2 settled: ") and "finalized in 0x" in settled, settled

    survivors = sorted(name for name in nodes.values() if name != nodes[proposer.lower()])
    resumed_out = fed.root / "runs" / "live-resumed"
    resumed = fed.start(
        "coordinator-resumed", *coordinate, "--nodes", str(len(survivors)), "--port", str(fed.superlink_port),
        "--out", str(resumed_out),
    )  # fmt: skip
    assert resumed.wait(timeout=400) == 0, fed.logs()
    # The surviving nodes reconnect to the coordinator's SuperLink restarted on its database, then
    # leave on Ctrl-C (checked after the audit, which runs meanwhile).
    logs = {name: fed.root / "logs" / f"supernode-{name[-1]}.log" for name in survivors}
    before = {name: log.read_text(errors="replace").count(RECONNECTED) for name, log in logs.items()}
    wait_for_logs(logs, {name: log.read_text(errors="replace").count(FAILED) for name, log in logs.items()}, FAILED)
    database = fed.root / ".fedledger" / "superlink" / "state.db"
    command = superlink_command(database, fed.superlink_port, free_port(), simulation=False)
    superlink = fed.start_command("superlink-restarted", command)
    first = [json.loads(line) for line in (out / "server" / "rounds.jsonl").read_text().splitlines()]
    rounds = [json.loads(line) for line in (resumed_out / "server" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in first] == [1] and not (out / "server" / "summary.json").exists()
    assert first[0]["accepted"] is True and first[0]["metrics"]["accuracy"] > 0.3
    assert [r["round"] for r in rounds] == [3]
    summary = json.loads((resumed_out / "server" / "summary.json").read_text())
    assert summary["chain_id"] == 31337 and len(summary["nodes"]) == len(survivors)
    # Every participant is honest, but a vote on 3 nodes is not infallible: the reference rule can
    # reject an honest update (docs/voting.md measures how often; the keys, and so the draws, are
    # new every run, and a run elsewhere saw a survivor's update rejected in round 3). Such a
    # rejection is the voters' recorded verdict, checked below as the only other cause of a slash.
    # An update can also get no verdict (issue 27): with one node killed, a round of the two survivors
    # has one voter, short of the quorum of 2 (the task default for a committee of 3).
    rejected = {a.lower() for a in rounds[0]["rejected"] + rounds[0].get("undecided", [])}
    assert rejected <= {p.lower() for p in rounds[0]["proposers"]}
    if any(nodes[p.lower()] in survivors and p.lower() not in rejected for p in rounds[0]["proposers"]):
        assert rounds[0]["accepted"] is True and rounds[0]["metrics"]["accuracy"] > 0.3

    with GatewayClient(fed.gateway, timeout=30) as client:
        state = client.round(2)
        assert state.phase == "FINALIZED"
        assert not state.proposers[0].committed
        assert client.round(3).phase == "FINALIZED" and client.task_info().current_round == 3
        rate = client.task().config.slash_rate_bps
        slashed = {r: [event_args(e) for e in client.events(r, names=("Slashed",))] for r in (1, 2, 3)}
    # The crashed node loses stake in round 2 as the missing proposer (and in round 3 if drawn);
    # nobody else does, unless round 3's voters rejected their update.
    losers = {a["account"].lower() for r in slashed for a in slashed[r]}
    assert proposer.lower() in losers and losers <= {proposer.lower()} | rejected, slashed
    assert [int(a["amount"]) for a in slashed[2]] == [victim_stake * rate // 10_000]

    audit = fed.run(
        "audit", "--rpc-url", url, "--deployment", "deployments/local.json",
        "--blob-dir", ".fedledger/gateway/blobs", "--json", "verify",
    )  # fmt: skip
    verdict = json.loads(audit)
    assert verdict["disagreements"] == [], verdict
    assert_books_balance(url, fed.root / "deployments" / "local.json", list(nodes))
    wait_for_logs(logs, before, RECONNECTED)
    assert superlink.running()
    # The task is over: --stay nodes say so once and stay; a node joining now says so and leaves.
    stay_logs = {name: fed.root / "logs" / f"{name}.log" for name in survivors}
    wait_for_logs(stay_logs, dict.fromkeys(stay_logs, 0), "nothing left to serve; staying as asked (--stay)")
    late = fed.run(
        "node", "join", "--gateway", fed.gateway, "--superlink", f"127.0.0.1:{fed.superlink_port}",
        "--keystore", "keys/node-0.json", "--data", "digits:0/3",
    )  # fmt: skip
    assert late.strip().endswith("has played all its 3 rounds: nothing left to serve; not joining"), late
    for name in survivors:  # plain logs, and Flower's files in the node's own folder
        assert "\x1b[" not in logs[name].read_text(errors="replace"), name
    homes = sorted(p.parent.name.lower() for p in (fed.root / ".fedledger" / "nodes").glob("*/flwr"))
    assert homes == sorted(nodes), homes
    for name in survivors:
        os.kill(fed.processes[name].pid, signal.SIGINT)
    for name in survivors:
        assert fed.processes[name].wait(timeout=60) == 0, fed.processes[name].tail()
        assert marked_pids(fed.markers[name]) == [], f"{name} left processes behind"
    walls = ", ".join(f"{r['wall_s']:.1f}s" for r in first + rounds)
    print(f"\nlive federation: set-up {setup_s:.1f}s, rounds {walls}, total {time.monotonic() - started:.1f}s")
