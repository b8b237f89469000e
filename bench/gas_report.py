"""Gas per participant per round of FLTask, measured on the embedded chain (Prague rules, as anvil).

Usage:
    python bench/gas_report.py [--quick] [--json FILE] [--markdown]

Each scenario deploys a fresh task, registers N participants (half propose, half vote) and plays
three rounds whose every participant action is relayed in one EIP-712 batch per phase, the way the
gateway relays them: the last reveal finalizes the round; per-update rounds after the first open
with ``publishAndOpen``; aggregate rounds open with the transaction that finalizes the previous one
(``proposeAggregate(..., openNext=true)``). A round's gas is every transaction of it, including the
one that opened it. Round 1 also pays first-use costs (fresh storage slots); round 3 is the steady
state of a long-running federation. ``openRound`` is also measured at 32, 256 and 1,024 members with
the same committee size, to show that its cost does not grow with the membership.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_utils import keccak

from fedledger.contracts import typed_data as td
from fedledger.contracts.artifacts import load_artifact
from fedledger.contracts.bindings import FLTaskContract, Sent
from fedledger.contracts.canary import CanaryChain
from fedledger.contracts.sortition import items_of
from fedledger.contracts.types import BPS, CANARY_STUDY_RATE_BPS, TaskConfig, VoteMode, vote_commitment
from fedledger.deploy.chain import advance_time, dev_accounts, embedded_web3
from fedledger.deploy.deployer import deploy_task

ETH = 10**18
STEADY_ROUND = 3
EIP170_LIMIT = 24_576
TARGETS = {10: 50_000, 20: 50_000, 50: 40_000}
"""Issue 13's ceilings on gas per participant per round in the steady state."""


def _task(
    participants: int,
    mode: VoteMode,
    reviewers: int,
    rounds: int,
    committee: int | None = None,
    slash_bps: int = 3_000,
    canary_rate: int | None = None,
) -> Any:
    w3 = embedded_web3(num_accounts=participants + 2)
    keys = dev_accounts(w3)
    coordinator, relayer, members = keys[0].address, keys[1].address, keys[2:]
    config = TaskConfig(
        initial_model_hash=keccak(text="initial"),
        coordinator=coordinator,
        vote_mode=mode,
        max_committee=committee or participants,
        proposer_share_bps=5_000,
        reviewers_per_update=reviewers,
        total_rounds=rounds,
        slash_rate_bps=slash_bps,
        **({} if canary_rate is None else {"canary_rate_bps": canary_rate}),
    )
    manifest, task = deploy_task(w3, coordinator, config, pool_wei=100 * ETH)
    return w3, manifest, task, coordinator, relayer, members


def scenario(participants: int, mode: VoteMode, reviewers: int) -> list[dict[str, Any]]:
    """Rounds 1 and STEADY_ROUND of a task with ``participants`` members: one JSON entry each."""
    _, manifest, task, coordinator, relayer, members = _task(participants, mode, reviewers, STEADY_ROUND + 2)
    by_address = {k.address: k for k in members}
    register = [task.register(k.address, 2 * ETH).gas_used for k in members]
    rounds: dict[int, dict[str, Any]] = {}
    opened, sent = task.open_round(coordinator)
    open_gas = sent.gas_used
    for r in range(1, STEADY_ROUND + 1):
        # Every round continues (the task has rounds left): in aggregate mode its reveal batch opens the next.
        steps, opened_next = _relayed_round(task, opened, coordinator, relayer, by_address, mode, True)
        steps = {"open_round": open_gas, **steps}
        total = sum(v["total"] if isinstance(v, dict) else v for v in steps.values())
        rounds[r] = {
            "participants": participants,
            "proposers": len(opened.proposers),
            "voters": len(opened.voters),
            "vote_mode": mode.label,
            "reviewers_per_update": reviewers,
            "reviewers_in_effect": opened.reviewers,
            "round": r,
            **steps,
            "round_total": total,
            "per_participant_per_round": total // participants,
        }
        open_gas = 0  # aggregate mode: the reveal batch opened the next round, counted above
        if mode is VoteMode.PER_UPDATE and r < STEADY_ROUND:
            opened_next, sent = task.publish_and_open(coordinator, r, keccak(text=f"global {r}"))
            open_gas = sent.gas_used
        opened = opened_next
    first = rounds[1] | {"register_mean": sum(register) // len(register), "deploy": manifest.gas_used}
    return [first, rounds[STEADY_ROUND]]


def _relayed_round(
    task: FLTaskContract,
    opened: Any,
    coordinator: str,
    relayer: str,
    by_address: dict[str, Any],
    mode: VoteMode,
    continues: bool,
    between: Callable[[], int] | None = None,
) -> tuple[dict[str, Any], Any]:
    """One round with every participant action relayed in one batch per phase; gas of each step.

    ``between`` runs after the vote batch and before the reveal batch (a canary's declaration window)
    and returns the gas it spent.
    """
    r = opened.round
    domain = task.domain()
    committee = (opened.proposers, opened.voters)

    def sign(action: td.ActionType, message: dict[str, Any]) -> td.SignedAction:
        return td.sign_action(by_address[message[action.signer_field]], action, message, domain)

    commits = [
        sign(td.COMMIT_UPDATE, td.commit_update_message(p, r, keccak(text=f"{p}:{r}"), 100)) for p in opened.proposers
    ]
    commit = task.relay(relayer, commits, committee=committee)
    candidate = b"\0" * 32
    propose = 0
    if mode is VoteMode.AGGREGATE:
        candidate = keccak(text=f"candidate:{r}")
        propose = task.propose_aggregate(coordinator, r, candidate, open_next=continues).gas_used
    num_p, num_v = len(opened.proposers), len(opened.voters)
    votes, reveals, committed = [], [], []
    for j, v in enumerate(opened.voters):
        items = 1 if mode is VoteMode.AGGREGATE else len(items_of(j, num_p, num_v, opened.reviewers))
        bits = (1 << items) - 1
        salt = keccak(text=f"salt:{v}:{r}")
        commitment = vote_commitment(task.address, r, candidate, bits, salt, v)
        votes.append(sign(td.COMMIT_VOTE, td.commit_vote_message(v, r, commitment)))
        reveals.append(sign(td.REVEAL_VOTE, td.reveal_vote_message(v, r, bits, salt)))
        committed.append((j, commitment))
    vote = task.relay(relayer, votes, committee=committee)
    declared = between() if between is not None else 0
    reveal = task.relay(relayer, reveals, committee=committee, committed=committed)
    if not reveal.named("RoundFinalized"):
        raise RuntimeError(f"round {r} did not finalize with its last reveal")
    opened_next = None
    if reveal.named("RoundOpened"):
        opened_next = task.opened(reveal.named("RoundOpened")[0])
    return {
        "commit_update_batch": _batch(commit, num_p),
        "propose_aggregate": propose,
        "commit_vote_batch": _batch(vote, num_v),
        "reveal_vote_batch_and_finalize": _batch(reveal, num_v),
        **({"declare_canary": declared} if between is not None else {}),
    }, opened_next


def _batch(sent: Sent, entries: int) -> dict[str, int]:
    if sent.named("ActionRejected"):
        raise RuntimeError(f"a relayed entry was rejected: {sent.named('ActionRejected')[0].args}")
    return {"entries": entries, "total": sent.gas_used, "per_entry": sent.gas_used // entries}


def canary_costs(participants: int) -> dict[str, Any]:
    """What canaries cost at ``participants`` (per-update mode, half proposers): a seal, a declaration, and
    the steady-state gas per participant per round with the canaries the study's rate expects (the task
    default is off: canaries cost nothing then).

    Round 3 is played twice on two equal tasks, once without and once with one declared canary, so
    that the difference is what one canary adds to a round (declaration and settlement).
    """
    rate = CANARY_STUDY_RATE_BPS
    totals = {}
    seal_gas = declare_gas = 0
    for declares in (False, True):
        # Every proposal owes a canary here, so that the one declared wins its lottery.
        _, _, task, coordinator, relayer, members = _task(
            participants, VoteMode.PER_UPDATE, 10, STEADY_ROUND + 2, canary_rate=BPS
        )
        by_address = {k.address: k for k in members}
        chains = {k.address: CanaryChain(keccak(text=f"canary:{k.address}"), length=8) for k in members}
        for k in members:
            task.register(k.address, 2 * ETH)
            seal_gas = task.set_canary_seal(k.address, chains[k.address].seal).gas_used
        opened, sent = task.open_round(coordinator)
        total = 0
        for r in range(1, STEADY_ROUND + 1):
            last = declares and r == STEADY_ROUND
            declare = functools.partial(_declare, task, chains[opened.proposers[0]], opened.proposers[0], r)
            steps, _ = _relayed_round(
                task, opened, coordinator, relayer, by_address, VoteMode.PER_UPDATE, True, declare if last else None
            )
            total = sent.gas_used + sum(v["total"] if isinstance(v, dict) else v for v in steps.values())
            if last:
                declare_gas = int(steps["declare_canary"])
            if r < STEADY_ROUND:
                opened, sent = task.publish_and_open(coordinator, r, keccak(text=f"global {r}"))
        totals[declares] = total
    proposers = participants // 2
    per_canary = totals[True] - totals[False]
    expected = totals[False] + per_canary * rate * proposers // BPS
    return {
        "participants": participants,
        "canary_rate_bps": rate,
        "set_canary_seal": seal_gas,
        "declare_canary": declare_gas,
        "round_gas_per_canary": per_canary,
        "per_participant_per_round_without": totals[False] // participants,
        "per_participant_per_round_at_rate": expected // participants,
    }


def _declare(task: FLTaskContract, chain: CanaryChain, proposer: str, round_: int) -> int:
    """Declare ``proposer``'s update of ``round_`` a canary, countersigned by the coordinator; its gas."""
    x = chain.preimage
    if x is None:
        raise RuntimeError(f"the canary chain of {proposer} is spent")
    signature = td.sign_canary(dev_accounts(task.w3)[0], proposer, round_, x, task.domain())
    chain.declared()
    return task.declare_canary(proposer, round_, x, signature).gas_used


def open_round_by_members(counts: tuple[int, ...], committee: int = 10) -> list[dict[str, int]]:
    """Gas of a steady-state ``openRound`` (round 3) at each member count, with the same committee size."""
    out = []
    for count in counts:
        # No slashing: rounds in which nobody acts must leave the membership as it is.
        _, _, task, coordinator, relayer, members = _task(
            count, VoteMode.PER_UPDATE, 0, 4, committee=committee, slash_bps=0
        )
        for k in members:
            task.register(k.address, 2 * ETH)
        opened, _ = task.open_round(coordinator)
        gas = []
        for _ in (1, 2):
            _finish_silently(task, opened, relayer)
            opened, sent = task.open_round(coordinator)  # nothing was accepted: the global model stays
            gas.append(sent.gas_used)
        out.append({"members": count, "committee": committee, "open_round": gas[-1]})
    return out


def _finish_silently(task: FLTaskContract, opened: Any, relayer: str) -> None:
    """End a round in which nobody acts: the training deadline passes and nothing is judged."""
    config = task.config()
    advance_time(task.w3, config.training_duration + 1)
    task.advance_phase(relayer, opened.round)
    task.finalize_round(relayer, opened.round)


def code_sizes() -> dict[str, int]:
    """Deployed (runtime) bytecode size of each contract, against EIP-170's 24,576 bytes."""
    return {n: (len(load_artifact(n).deployed_bytecode) - 2) // 2 for n in ("FLTask", "Registry", "Settlement")}


def markdown(entries: list[dict[str, Any]], opens: list[dict[str, int]], canaries: list[dict[str, Any]]) -> str:
    """The README tables."""
    rows = [
        "| participants (P+V) | mode | k | round | openRound | commit / entry | vote commit / entry "
        "| reveal + finalize / entry | propose | per participant per round | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in entries:
        target = f"{TARGETS[e['participants']]:,}" if e["round"] == STEADY_ROUND else ""
        rows.append(
            f"| {e['participants']} ({e['proposers']}+{e['voters']}) | {e['vote_mode']} "
            f"| {e['reviewers_per_update']} | {e['round']} | {e['open_round']:,} "
            f"| {e['commit_update_batch']['per_entry']:,} | {e['commit_vote_batch']['per_entry']:,} "
            f"| {e['reveal_vote_batch_and_finalize']['per_entry']:,} | {e['propose_aggregate']:,} "
            f"| **{e['per_participant_per_round']:,}** | {target} |"
        )
    rows += ["", "| members | committee | openRound (steady state) |", "|---:|---:|---:|"]
    rows += [f"| {o['members']:,} | {o['committee']} | {o['open_round']:,} |" for o in opens]
    rows += [
        "",
        "| participants | setCanarySeal (once) | declareCanary | round gas per canary | per participant per round, "
        "no canary | at the study's canary rate | target |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows += [
        f"| {c['participants']} | {c['set_canary_seal']:,} | {c['declare_canary']:,} | {c['round_gas_per_canary']:,} "
        f"| {c['per_participant_per_round_without']:,} | **{c['per_participant_per_round_at_rate']:,}** "
        f"({c['canary_rate_bps'] / 100:g} %) | {TARGETS[c['participants']]:,} |"
        for c in canaries
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios; print JSON (or the markdown tables); check the targets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 participants and 32/256 members only (for CI)")
    parser.add_argument("--reviewers", type=int, default=TaskConfig.model_fields["reviewers_per_update"].default)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--markdown", action="store_true", help="print the README tables instead of JSON")
    args = parser.parse_args(argv)
    sizes = (10,) if args.quick else (10, 20, 50)
    entries = [e for n in sizes for mode in VoteMode for e in scenario(n, mode, args.reviewers)]
    opens = open_round_by_members((32, 256) if args.quick else (32, 256, 1024))
    canaries = [canary_costs(n) for n in sizes]
    result = {"rounds": entries, "open_round_by_members": opens, "canaries": canaries, "code_sizes": code_sizes()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(entries, opens, canaries) if args.markdown else json.dumps(result, indent=2))
    over = [
        e for e in entries if e["round"] == STEADY_ROUND and e["per_participant_per_round"] > TARGETS[e["participants"]]
    ]
    big = {n: size for n, size in result["code_sizes"].items() if size > EIP170_LIMIT}
    for e in over:
        print(f"over target: {e['participants']} {e['vote_mode']}: {e['per_participant_per_round']:,}", file=sys.stderr)
    for name, size in big.items():
        print(f"over EIP-170: {name} {size:,} bytes", file=sys.stderr)
    return 1 if over or big else 0


if __name__ == "__main__":
    sys.exit(main())
