"""Load test of the gateway: N concurrent clients register, submit, vote and reveal in one round.

Usage: python -m bench.gateway_load [--clients 50] [--window 2.0]
       python -m bench.gateway_load --processes 200 [--window 2.0] [--json FILE] [--quick]

``--clients``: every client is its own gRPC channel in its own thread, beside the gateway and
the embedded chain in this process. ``--processes``: every client is its own process, against a
gateway process on anvil (both started and stopped here): each registers; the round's proposers
each submit a ~100 KB update and its voters commit and reveal. Counted from the chain's events:
lost and duplicated actions, batch sizes, relayed actions per second; measured by the clients:
p50 / p99 latency of the acknowledgement (submit: until QUEUED) and of inclusion (until the
action's event is on chain, seen by polling the node every 50 ms); the gateway's CPU seconds and
peak memory from /proc.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from bench import emit
from fedledger.contracts.sortition import items_of
from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.proto import gateway_pb2 as pb

ETH = 10**18


def run(clients: int = 50, window: float = 2.0, data_dir: Path | None = None) -> dict[str, Any]:
    """Run the load scenario and return the measured figures."""
    from fedledger.server.gateway.ledger import open_embedded  # not in the client processes of run_processes
    from fedledger.server.gateway.server import GatewayServer, GatewaySettings

    fields = {
        "initial_model_hash": b"\x01" * 32,
        "max_committee": clients,
        "training_duration": 300,
        "voting_duration": 300,
        "reveal_duration": 300,
    }
    ledger, keys = open_embedded(fields, dev_accounts=clients)
    directory = data_dir or Path(tempfile.mkdtemp(prefix="fedledger-load-"))
    server = GatewayServer(ledger, GatewaySettings(port=0, data_dir=directory, flush_window=window))
    address = server.start()
    coordinator, members = keys[0], keys[1:]
    try:
        start = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda k: _client(address).register(k, 2 * ETH), members))
        register_seconds = time.monotonic() - start
        admin = _client(address)
        roles = admin.open_round(coordinator)
        proposers, voters = set(roles.proposers), set(roles.voters)
        results: dict[str, list[int]] = {"submit": [], "commit": [], "reveal": []}
        lock = threading.Lock()

        def participant(key: LocalAccount) -> None:
            client = _client(address)
            if key.address in proposers:
                outcome = client.submit_update(key, 1, secrets.token_bytes(20_000), 10)
                with lock:
                    results["submit"].append(outcome.status)
                return
            if key.address not in voters:
                return
            salt = secrets.token_bytes(32)
            seat = list(roles.voters).index(key.address)
            bits = (1 << len(items_of(seat, len(roles.proposers), len(roles.voters), roles.reviewers))) - 1
            client.wait_for_phase(1, "VOTING")
            commit = client.commit_vote(key, 1, bits, salt)
            client.wait_for_phase(1, "REVEALING")
            reveal = client.reveal_vote(key, 1, bits, salt)
            with lock:
                results["commit"].append(commit.status)
                results["reveal"].append(reveal.status)

        relay_start = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(participant, members))
        relay_seconds = time.monotonic() - relay_start
        if admin.round(1, brief=True).phase != "FINALIZED":  # the last reveal finalizes; else the deadline
            admin.finalize_round(coordinator, 1)
        counts = Counter(e.name for e in admin.events())
        relayed = counts["UpdateCommitted"] + counts["VoteCommitted"] + counts["VoteRevealed"]
        return {
            "clients": clients,
            "proposers": len(roles.proposers),
            "voters": len(roles.voters),
            "flush_window_s": window,
            "registered_on_chain": counts["Registered"],
            "update_commitments_on_chain": counts["UpdateCommitted"],
            "vote_commitments_on_chain": counts["VoteCommitted"],
            "reveals_on_chain": counts["VoteRevealed"],
            "finalized_on_chain": counts["RoundFinalized"],
            "rejected_on_chain": counts["ActionRejected"],
            "all_included": all(s == pb.INCLUDED for statuses in results.values() for s in statuses),
            "batch_sizes": list(server.relayer.stats.batch_sizes),
            "relayed_actions": relayed,
            "relay_seconds": round(relay_seconds, 2),
            "relayed_actions_per_second": round(relayed / relay_seconds, 1),
            "register_seconds": round(register_seconds, 2),
            "registrations_per_second": round(clients / register_seconds, 1),
        }
    finally:
        server.stop(grace=1)


UPDATE_BYTES = 100_000


def _worker(index: int, address: str, barrier: Any, out: Any) -> None:
    """One client process: register, then act in the round as its role says; report timings."""
    from fedledger.deploy.chain import dev_key

    key = dev_key(index + 1, "fedledger-load")
    client = GatewayClient(address, timeout=300)
    started = time.time()
    client.register(key, 2 * ETH)
    report: dict[str, Any] = {"address": key.address, "register_s": time.time() - started}
    barrier.wait()  # everyone registered
    barrier.wait()  # the round is open
    state = client.round()
    proposers = [p.address for p in state.proposers]
    voters = {v.address: v for v in state.voters}
    if key.address in proposers:
        report["submit_at"] = time.time()
        result = client.submit_update(key, state.round, secrets.token_bytes(UPDATE_BYTES), 10, wait=False)
        report["submit_ack_s"], report["submit_status"] = time.time() - report["submit_at"], result.status
    barrier.wait()  # every proposer was acknowledged
    barrier.wait()  # voting is open
    salt, bits = secrets.token_bytes(32), 0
    if key.address in voters:
        bits = (1 << len(voters[key.address].items)) - 1
        report["commit_at"] = time.time()
        result = client.commit_vote(key, state.round, bits, salt, wait=False)
        report["commit_ack_s"], report["commit_status"] = time.time() - report["commit_at"], result.status
    barrier.wait()  # every voter committed
    barrier.wait()  # revealing is open
    if key.address in voters:
        report["reveal_at"] = time.time()
        result = client.reveal_vote(key, state.round, bits, salt, wait=False)
        report["reveal_ack_s"], report["reveal_status"] = time.time() - report["reveal_at"], result.status
    client.close()
    out.put(report)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


class _EventWatch:
    """Polls the node (not the gateway) every 50 ms and notes when each action's event first appeared."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.seen: dict[tuple[str, str], float] = {}
        self.transactions: dict[str, set[str]] = {}
        self._block = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        names = {"UpdateCommitted": "proposer", "VoteCommitted": "voter", "VoteRevealed": "voter"}
        while not self._stop.wait(0.05):
            latest = int(self.task.w3.eth.block_number)
            if latest <= self._block:
                continue
            for event in self.task.events(from_block=self._block + 1, to_block=latest):
                if event.name in names:
                    self.seen.setdefault((event.name, event.args[names[event.name]]), time.time())
                    self.transactions.setdefault(event.name, set()).add(event.transaction_hash)
            self._block = latest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _proc_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and peak resident memory (bytes) of process ``pid`` and its children so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = next(int(line.split()[1]) * 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))  # fmt: skip
    return cpu, peak


def run_processes(processes: int, window: float = 2.0) -> dict[str, Any]:
    """The load scenario with ``processes`` client processes against a gateway process on anvil."""
    import multiprocessing
    import subprocess

    from eth_account import Account

    from fedledger.contracts.bindings import FLTaskContract
    from fedledger.contracts.types import TaskConfig
    from fedledger.deploy.anvil import ANVIL_DEV_KEY, AnvilNode
    from fedledger.deploy.chain import connect, dev_key, fund, use_account
    from fedledger.deploy.deployer import deploy_task

    directory = Path(tempfile.mkdtemp(prefix="fedledger-load-"))
    with AnvilNode(accounts=2) as node:
        w3 = connect(node.url)
        deployer = use_account(w3, Account.from_key(ANVIL_DEV_KEY))
        coordinator = dev_key(0, "fedledger-load")
        keys = [dev_key(i + 1, "fedledger-load") for i in range(processes)]
        fund(w3, deployer, [coordinator.address, *(k.address for k in keys)], 10 * ETH)
        config = TaskConfig(
            initial_model_hash=b"\x01" * 32, coordinator=coordinator.address, max_committee=min(processes, 120),
            training_duration=600, voting_duration=600, reveal_duration=600,
        )  # fmt: skip
        manifest, _ = deploy_task(w3, deployer, config, pool_wei=10 * ETH, rpc_url=node.url)
        manifest.save(directory / "deployment.json")
        (directory / "relayer.key").write_text(ANVIL_DEV_KEY)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "fedledger.cli", "gateway", "serve", "--port", "0", "--data-dir",
             str(directory / "gateway"), "--rpc-url", node.url, "--deployment", str(directory / "deployment.json"),
             "--relayer-key-file", str(directory / "relayer.key"), "--flush-window", str(window),
             "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            discovery = directory / "gateway" / "gateway.json"
            while not discovery.is_file():
                if gateway.poll() is not None:
                    raise RuntimeError("the gateway did not start")
                time.sleep(0.1)
            address = json.loads(discovery.read_text())["address"]
            admin = GatewayClient(address, timeout=300)
            admin.wait_ready()
            cpu_before, _ = _proc_usage(gateway.pid)
            context = multiprocessing.get_context("spawn")
            barrier, out = context.Barrier(processes + 1), context.Queue()
            workers = [context.Process(target=_worker, args=(i, address, barrier, out)) for i in range(processes)]
            for worker in workers:
                worker.start()
            watch = _EventWatch(FLTaskContract(w3, manifest.task.address))
            barrier.wait()  # registered
            roles = admin.open_round(coordinator)
            barrier.wait()  # round open
            barrier.wait()  # proposers acknowledged
            admin.flush(coordinator)
            if admin.round(roles.round, brief=True).phase == "TRAINING":
                admin.advance_phase(coordinator, roles.round)
            barrier.wait()  # voting open
            barrier.wait()  # voters acknowledged
            admin.flush(coordinator)
            if admin.round(roles.round, brief=True).phase == "VOTING":
                admin.advance_phase(coordinator, roles.round)
            barrier.wait()  # revealing open
            reports = [out.get(timeout=600) for _ in workers]
            for worker in workers:
                worker.join(timeout=60)
            admin.flush(coordinator)
            if admin.round(roles.round, brief=True).phase == "REVEALING":
                admin.finalize_round(coordinator, roles.round)
            time.sleep(0.3)
            watch.stop()
            cpu_after, peak = _proc_usage(gateway.pid)
            events = admin.events(roles.round)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    return _load_figures(processes, window, roles, reports, watch, events, cpu_after - cpu_before, peak)


def _load_figures(
    processes: int, window: float, roles: pb.RoundRoles, reports: list[dict[str, Any]], watch: _EventWatch,
    events: list[pb.Event], cpu: float, peak: int,
) -> dict[str, Any]:  # fmt: skip
    counts = Counter(e.name for e in events)
    signers = Counter((e.name, json.loads(e.args_json).get("proposer") or json.loads(e.args_json).get("voter"))
                      for e in events if e.name in ("UpdateCommitted", "VoteCommitted", "VoteRevealed"))  # fmt: skip
    acked = {"UpdateCommitted": [r for r in reports if "submit_at" in r],
             "VoteCommitted": [r for r in reports if "commit_at" in r],
             "VoteRevealed": [r for r in reports if "reveal_at" in r]}  # fmt: skip
    started_key = {"UpdateCommitted": "submit_at", "VoteCommitted": "commit_at", "VoteRevealed": "reveal_at"}
    inclusion = [watch.seen[(name, r["address"])] - r[started_key[name]] for name, rs in acked.items() for r in rs
                 if (name, r["address"]) in watch.seen]  # fmt: skip
    lost = sum(1 for name, rs in acked.items() for r in rs if (name, r["address"]) not in watch.seen)
    sizes = [sum(1 for s in signers if s[0] == name) / max(1, len(watch.transactions.get(name, ())))
             for name in acked]  # fmt: skip
    first = min((r[k] for r in reports for k in ("submit_at", "commit_at", "reveal_at") if k in r), default=0.0)
    last = max(watch.seen.values(), default=first)
    relayed = sum(counts[name] for name in acked)
    return {
        "processes": processes, "chain": "anvil", "flush_window_s": window,
        "proposers": len(roles.proposers), "voters": len(roles.voters), "update_bytes": UPDATE_BYTES,
        "registered": sum(1 for r in reports if "register_s" in r),
        "acknowledged": {name: len(rs) for name, rs in acked.items()},
        "on_chain": {name: counts[name] for name in acked},
        "lost_actions": lost,
        "duplicated_actions": sum(n - 1 for n in signers.values() if n > 1),
        "finalized": counts["RoundFinalized"] == 1,
        "mean_batch_size": {name: round(size, 1) for name, size in zip(acked, sizes, strict=True)},
        "relayed_actions": relayed,
        "relayed_actions_per_second": round(relayed / max(last - first, 1e-9), 1),
        "register_p50_s": _percentile([r["register_s"] for r in reports], 0.5),
        "register_p99_s": _percentile([r["register_s"] for r in reports], 0.99),
        "ack_p50_s": _percentile([r[k] for r in reports for k in ("submit_ack_s", "commit_ack_s", "reveal_ack_s")
                                  if k in r], 0.5),
        "ack_p99_s": _percentile([r[k] for r in reports for k in ("submit_ack_s", "commit_ack_s", "reveal_ack_s")
                                  if k in r], 0.99),
        "submit_ack_p50_s": _percentile([r["submit_ack_s"] for r in reports if "submit_ack_s" in r], 0.5),
        "submit_ack_p99_s": _percentile([r["submit_ack_s"] for r in reports if "submit_ack_s" in r], 0.99),
        "inclusion_p50_s": _percentile(inclusion, 0.5),
        "inclusion_p99_s": _percentile(inclusion, 0.99),
        "gateway_cpu_s": round(cpu, 2),
        "gateway_peak_rss_mb": round(peak / 2**20, 1),
    }  # fmt: skip


def _client(address: str) -> GatewayClient:
    return GatewayClient(address, timeout=120)


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50, help="client threads in this process (embedded chain)")
    parser.add_argument("--processes", type=int, default=None, help="client processes against a gateway on anvil")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to FILE")
    parser.add_argument("--quick", action="store_true", help="--processes 12 (CI)")
    args = parser.parse_args(argv)
    if args.processes is not None or args.quick:
        figures = run_processes(12 if args.quick else args.processes, args.window)
    else:
        figures = run(args.clients, args.window)
    emit(figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
