"""Load test of the gateway: N concurrent clients register, submit, vote and reveal in one round.

Usage: python -m bench.gateway_load [--clients 50] [--window 2.0]

Every client is its own gRPC channel in its own thread. Prints the relayer's batch sizes and
the relayed actions per second (first submission to last reveal), counted from chain events.
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

from fedledger.contracts.sortition import items_of
from fedledger.server.gateway.client import GatewayClient
from fedledger.server.gateway.ledger import open_embedded
from fedledger.server.gateway.proto import gateway_pb2 as pb
from fedledger.server.gateway.server import GatewayServer, GatewaySettings

ETH = 10**18


def run(clients: int = 50, window: float = 2.0, data_dir: Path | None = None) -> dict[str, Any]:
    """Run the load scenario and return the measured figures."""
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


def _client(address: str) -> GatewayClient:
    return GatewayClient(address, timeout=120)


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--window", type=float, default=2.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.clients, args.window), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
