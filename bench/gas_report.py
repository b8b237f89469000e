"""Gas per action of one full governed round, measured on the embedded chain (cancun gas rules).

Usage:
    python bench/gas_report.py            # JSON on stdout
    python bench/gas_report.py --markdown # the README table

Each scenario deploys a fresh task, registers N participants and plays three rounds whose every
participant action is relayed in one EIP-712 batch per phase, finalized and published. Gas per
participant per round = (open + batches + finalize + publish) / N, for round 1 (which also pays
first-use costs) and round 3 (steady state: every account and slot written before).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from eth_utils import keccak

from fedledger.contracts import typed_data as td
from fedledger.contracts.bindings import FLTaskContract
from fedledger.contracts.types import TaskConfig, VoteMode, vote_commitment
from fedledger.deploy.chain import advance_time, dev_accounts, embedded_web3
from fedledger.deploy.deployer import deploy_task

ETH = 10**18


STEADY_ROUND = 3
"""The round reported as steady state: by then every account and the round's slots have been written before."""


def scenario(participants: int, mode: VoteMode) -> dict[str, Any]:
    """Play rounds 1..STEADY_ROUND with ``participants`` members (half propose, half vote) and measure gas.

    The top-level figures are round 1's (which also pays first-use costs); ``steady_state`` has
    the same figures for round STEADY_ROUND.
    """
    w3 = embedded_web3(num_accounts=participants + 2)
    keys = dev_accounts(w3)
    coordinator, relayer, members = keys[0].address, keys[1].address, keys[2:]
    config = TaskConfig(
        initial_model_hash=keccak(text="initial"),
        coordinator=coordinator,
        vote_mode=mode,
        max_committee=participants,
        proposer_share_bps=5_000,
        total_rounds=STEADY_ROUND + 2,
    )
    manifest, task = deploy_task(w3, coordinator, config, pool_wei=100 * ETH)
    by_address = {k.address: k for k in members}
    register = [task.register(k.address, 2 * ETH).gas_used for k in members]
    rounds = [_relayed_round(task, r, coordinator, relayer, by_address, mode) for r in range(1, STEADY_ROUND + 1)]
    first, steady = rounds[0], rounds[-1]
    return {
        "participants": participants,
        "vote_mode": mode.label,
        "deploy": manifest.gas_used,
        "register": {"first": register[0], "mean": round(statistics.mean(register)), "max": max(register)},
        **first,
        "per_participant_per_round": first["round_total"] // participants,
        "steady_state": {
            "round": STEADY_ROUND,
            **steady,
            "per_participant_per_round": steady["round_total"] // participants,
        },
        "direct_forms": _direct_forms(task, coordinator, relayer, mode, STEADY_ROUND + 1),
    }


def _relayed_round(
    task: FLTaskContract,
    r: int,
    coordinator: str,
    relayer: str,
    by_address: dict[str, Any],
    mode: VoteMode,
) -> dict[str, Any]:
    """Round ``r`` with every participant action relayed in one EIP-712 batch per phase; gas of each step."""
    opened, open_sent = task.open_round(coordinator)
    domain = task.domain()
    deadline = int(task.w3.eth.get_block("latest")["timestamp"]) + 3_600

    def sign(action: td.ActionType, message: dict[str, Any]) -> td.SignedAction:
        return td.sign_action(by_address[message[action.signer_field]], action, message, domain)

    commits = [
        sign(td.COMMIT_UPDATE, td.commit_update_message(p, r, keccak(text=f"{p}:{r}"), 100, task.nonce(p), deadline))
        for p in opened.proposers
    ]
    commit_gas = task.relay(relayer, commits).gas_used
    candidate = b"\0" * 32
    propose_gas = 0
    if mode is VoteMode.AGGREGATE:
        candidate = keccak(text=f"candidate:{r}")
        propose_gas = task.propose_aggregate(coordinator, r, candidate).gas_used
    bits = (1 << len(opened.proposers)) - 1 if mode is VoteMode.PER_UPDATE else 1
    salt = keccak(text=f"salt:{r}")
    nonces = {v: task.nonce(v) for v in opened.voters}
    votes = [
        sign(
            td.COMMIT_VOTE,
            td.commit_vote_message(
                v, r, vote_commitment(task.address, r, candidate, bits, salt, v), nonces[v], deadline
            ),
        )
        for v in opened.voters
    ]
    vote_gas = task.relay(relayer, votes).gas_used
    reveals = [
        sign(td.REVEAL_VOTE, td.reveal_vote_message(v, r, bits, salt, nonces[v] + 1, deadline)) for v in opened.voters
    ]
    reveal_gas = task.relay(relayer, reveals).gas_used
    finalize_gas = task.finalize_round(relayer, r).gas_used
    publish_gas = (
        task.publish_global(coordinator, r, keccak(text=f"g{r}")).gas_used if mode is VoteMode.PER_UPDATE else 0
    )
    n_p, n_v = len(opened.proposers), len(opened.voters)
    round_total = open_sent.gas_used + commit_gas + propose_gas + vote_gas + reveal_gas + finalize_gas + publish_gas
    return {
        "proposers": n_p,
        "voters": n_v,
        "open_round": open_sent.gas_used,
        "commit_update_batch": {"entries": n_p, "total": commit_gas, "per_entry": commit_gas // n_p},
        "propose_aggregate": propose_gas,
        "commit_vote_batch": {"entries": n_v, "total": vote_gas, "per_entry": vote_gas // n_v},
        "reveal_vote_batch": {"entries": n_v, "total": reveal_gas, "per_entry": reveal_gas // n_v},
        "finalize_round": finalize_gas,
        "publish_global": publish_gas,
        "round_total": round_total,
    }


def _direct_forms(task: FLTaskContract, coordinator: str, relayer: str, mode: VoteMode, r: int) -> dict[str, int]:
    """Gas of the non-relayed forms in round ``r`` (one sender, msg.sender acts)."""
    opened, _ = task.open_round(coordinator)
    commit = task.commit_update(opened.proposers[0], r, keccak(text="direct"), 10).gas_used
    for p in opened.proposers[1:]:
        task.commit_update(p, r, keccak(text=f"{p}:direct"), 10)
    if mode is VoteMode.AGGREGATE:
        task.propose_aggregate(coordinator, r, keccak(text="candidate-direct"))
    voter = opened.voters[0]
    salt = b"\x22" * 32
    vote = task.commit_vote(voter, r, task.vote_commitment(r, 1, salt, voter)).gas_used
    advance_time(task.w3, task.config().voting_duration + 1)
    task.advance_phase(relayer, r)
    reveal = task.reveal_vote(voter, r, 1, salt).gas_used
    return {"commit_update": commit, "commit_vote": vote, "reveal_vote": reveal}


def markdown(results: list[dict[str, Any]]) -> str:
    """The README table."""
    rows = [
        "| participants (P+V) | mode | register | openRound | commit / entry | vote commit / entry "
        f"| reveal / entry | finalize | publish | per participant per round | same, round {STEADY_ROUND} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['participants']} ({r['proposers']}+{r['voters']}) | {r['vote_mode']} "
            f"| {r['register']['mean']:,} | {r['open_round']:,} | {r['commit_update_batch']['per_entry']:,} "
            f"| {r['commit_vote_batch']['per_entry']:,} | {r['reveal_vote_batch']['per_entry']:,} "
            f"| {r['finalize_round']:,} | {r['publish_global']:,} | {r['per_participant_per_round']:,} "
            f"| {r['steady_state']['per_participant_per_round']:,} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print JSON (or the markdown table)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print the README table instead of JSON")
    args = parser.parse_args(argv)
    results = [
        scenario(10, VoteMode.PER_UPDATE),
        scenario(10, VoteMode.AGGREGATE),
        scenario(20, VoteMode.PER_UPDATE),
    ]
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
