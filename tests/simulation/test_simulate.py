"""`fedledger simulate` end to end: real processes, the must-hold figures of the governed rounds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedledger.processes import marked_pids
from fedledger.simulation.report import Report
from fedledger.simulation.runner import Simulation, SimulationOptions

pytestmark = pytest.mark.slow
EPS = 0.05  # the task's vote tolerance (500 bps)


def simulate(out: Path, **options: object) -> tuple[Report, Simulation]:
    simulation = Simulation(SimulationOptions(out=out, **options))  # type: ignore[arg-type]
    report = simulation.run()
    left = marked_pids(simulation.marker)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for pid in left]
    assert left == [], commands  # nothing left running
    return report, simulation


def audit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "audit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


README = Path(__file__).resolve().parents[2] / "README.md"
SECONDS_COLUMN = re.compile(r"^(\s+\d+\s+(?:yes|no)\s.*\s)\d+\.\d+$")
BYTES = re.compile(r"^mean ([\d,]+), max ([\d,]+)$")


def readme_sample() -> list[str]:
    """The lines of the README's sample of the main job (the fenced block after ``<!-- simulate-sample -->``)."""
    text = README.read_text().split("<!-- simulate-sample -->", 1)[1]
    return text.split("```text\n", 1)[1].split("```", 1)[0].splitlines()


def comparable(lines: list[str]) -> tuple[list[str], list[int]]:
    """``lines`` without what changes from run to run: wall seconds, and the bytes per client.

    Flower draws its node ids at random, and a message's metadata carries them as varints of 9
    or 10 bytes: the bytes move by a few (compared within 0.1 % instead).
    """
    kept, counts = [], []
    for line in (line.rstrip() for line in lines):
        line = re.sub(r"wall \d+\.\d+ s", "wall - s", SECONDS_COLUMN.sub(r"\1-", line))
        if match := BYTES.match(line):
            counts += [int(match[1].replace(",", "")), int(match[2].replace(",", ""))]
            line = "mean -, max -"
        kept.append(line)
    return kept, counts


def assert_prints_the_readme_sample(stdout: str) -> None:
    """What the README shows the main job printing is what it prints (but wall times)."""
    sample = readme_sample()
    printed = [line.rstrip() for line in stdout.splitlines()]
    start = printed.index(sample[0].rstrip())  # the summary's title line
    expected, expected_bytes = comparable(sample)
    actual, actual_bytes = comparable(printed[start : start + len(sample)])
    assert actual == expected, "\n".join(printed[start:])
    assert len(actual_bytes) == len(expected_bytes) == 2
    assert actual_bytes == pytest.approx(expected_bytes, rel=1e-3)


def test_the_readme_sample_comparison_sees_a_changed_figure() -> None:
    sample = "\n".join(readme_sample())
    assert_prints_the_readme_sample("progress\n" + re.sub(r"wall \d+\.\d+ s", "wall 99.9 s", sample))
    for figure in re.findall(r"\d\.\d{4}", sample)[:3]:  # an accuracy or loss of the table
        with pytest.raises(AssertionError):
            assert_prints_the_readme_sample(sample.replace(figure, "0.1234", 1))


def test_default_run_catches_its_attackers_pays_the_honest_and_audits_clean(tmp_path: Path) -> None:
    """`fedledger simulate` as the README's first command runs it: 2 of 10 clients flip their updates' sign.

    It prints exactly the README's sample: the run is the same on every x86-64 machine with the
    locked packages (fedledger.numerics, requirements.lock), so a drift shows here first.
    """
    started = time.monotonic()
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "simulate", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False, env=os.environ | {"COLUMNS": "80"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - started < 180
    assert_prints_the_readme_sample(done.stdout)
    assert marked_pids(json.loads((out / "run.json").read_text())["marker"]) == []  # nothing left running
    report = Report.model_validate_json((out / "report.json").read_text())
    assert report.governance and report.clients == 10 and len(report.rounds) == 5 and report.seed == 0
    assert report.attackers.count == 2 and report.attackers.attack == "sign_flip"
    assert report.final["accuracy"] >= 0.9
    attackers = set(report.attackers.addresses)
    # Every reversed update kept out: rejected, or (round 4, late in training) left without a verdict
    assert all(attackers & set(r.proposers) <= set(r.rejected) | set(r.undecided) for r in report.rounds)
    assert not attackers & {a for r in report.rounds for a in r.accepted_proposers}
    money = {p.address: p for p in report.participants}
    proposed = attackers & {p for r in report.rounds for p in r.proposers}
    assert proposed  # two of ten clients over 5 rounds of 5 proposers: drawn
    for address in proposed:  # caught and slashed
        assert money[address].slashed_wei > 0 and money[address].net_wei < 0, money[address]
    assert all(p.net_wei >= 0 for p in report.participants if p.honest), report.participants
    assert all(r.gas_used > 0 and r.bytes_up > 0 and r.bytes_down > 0 for r in report.rounds)
    # The default 10 reviewers per update exceed the 5 voters: every voter judges every update.
    assert all(r.reviewers == len(r.voters) and r.evaluations == r.reviewers * len(r.proposers) for r in report.rounds)
    assert "A:0x" in done.stdout and "…" not in done.stdout  # the summary marks attackers and cuts nothing
    for plot in ("accuracy.png", "balance.png", "votes.png"):
        assert (out / plot).stat().st_size > 1000
    clean = audit("--run", str(out), "--json", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    verified = json.loads(clean.stdout)
    assert verified["disagreements"] == [] and verified["rounds_checked"] == 5 and verified["blobs_corrupted"] == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = next(p for p in (copy / "gateway" / "blobs").rglob("*") if p.is_file())
    victim.write_bytes(b"tampered")
    tampered = audit("--run", str(copy), "--json", "verify")
    assert tampered.returncode == 1
    assert len(json.loads(tampered.stdout)["disagreements"]) == 1


def replay_in_process(report: Report, **scenario: object) -> None:
    """The in-process federation (bench.robustness's engine), given this run's draws, must agree exactly.

    Same accuracy every round, same rejections, same stakes and rewards to the wei: the study's
    figures are what `fedledger simulate` (gateway, contract, Flower) would have produced.
    """
    from fedledger.simulation.inprocess import InProcessRun, Scenario

    committees = [(r.proposers, r.voters) for r in report.rounds]
    scenario = {k: v for k, v in scenario.items() if k != "rounds"}
    result = InProcessRun(Scenario(seed=report.seed, rounds=len(report.rounds), **scenario), committees).run()  # type: ignore[arg-type]
    for chain_round, played in zip(report.rounds, result.rounds, strict=True):
        assert played.accuracy == pytest.approx(chain_round.metrics["accuracy"], abs=1e-9), chain_round.round
        assert sorted(played.rejected) == sorted(chain_round.rejected), chain_round.round
    money = {m.address: m for m in result.money}
    for p in report.participants:
        assert (money[p.address].stake_end_wei, money[p.address].rewarded_wei) == (p.stake_end_wei, p.rewarded_wei)
        assert money[p.address].net_wei == p.net_wei


def test_two_reviewers_per_update_judge_each_update_and_the_chain_agrees(tmp_path: Path) -> None:
    """k = 2 of 4 voters: each voter is sent two updates, the contract tallies them, the study's engine agrees."""
    from fedledger.simulation.inprocess import Incentives

    options = {"clients": 8, "rounds": 2, "attackers": 2, "attack": "sign_flip"}
    report, _ = simulate(tmp_path / "run", seed=2, reviewers_per_update=2, **options)
    assert all(r.reviewers == 2 and len(r.proposers) == 4 and len(r.voters) == 4 for r in report.rounds)
    assert all(r.evaluations == 8 for r in report.rounds)  # P x k, not P x V = 16
    clean = audit("--run", str(tmp_path / "run"), "--json", "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["disagreements"] == []
    replay_in_process(report, incentives=Incentives(reviewers_per_update=2), **options)


def test_scaled_attackers_are_rejected_one_by_one(tmp_path: Path) -> None:
    report, _ = simulate(tmp_path / "run", seed=1, attackers=2, attack="scale:-10")
    attackers = set(report.attackers.addresses)
    assert len(attackers) == 2 and report.vote_rule == "reference" and report.attackers.voter_attack == "honest"
    proposed = 0
    for r in report.rounds:
        assert set(r.rejected) == attackers & set(r.proposers)  # every attacker update, and only those
        assert r.attackers_rejected == r.rejected and r.attackers_accepted == []
        proposed += len(attackers & set(r.proposers))
    assert proposed > 0
    assert report.final["accuracy"] >= 0.90
    for p in report.participants:
        assert p.net_wei == p.stake_end_wei - p.stake_start_wei + p.rewarded_wei
        if p.honest:
            assert p.stake_end_wei >= p.stake_start_wei and p.net_wei > 0, p
        else:
            assert p.stake_end_wei < p.stake_start_wei and p.net_wei < 0, p
    outcome = report.outcome
    assert outcome is not None and outcome.recall == 1.0 and outcome.false_rejection == 0.0
    assert outcome.attacker_net_max_wei is not None and outcome.attacker_net_max_wei < 0
    replay_in_process(report, attackers=2, attack="scale:-10")


@pytest.mark.parametrize(("voter_attack", "seed"), [("no_reveal", 2), ("collude", 3)])
def test_voter_attacks_play_out_on_chain_as_in_the_in_process_federation(
    tmp_path: Path, voter_attack: str, seed: int
) -> None:
    """Attackers that flip signs and vote by their voter attack; the chain settles what the study predicts."""
    options = {"clients": 5, "rounds": 2, "attackers": 2, "attack": "sign_flip", "voter_attack": voter_attack}
    report, _ = simulate(tmp_path / "run", seed=seed, reveal_duration=5, **options)  # unrevealed votes wait 5 s
    attackers = set(report.attackers.addresses)
    assert report.attackers.voter_attack == voter_attack
    punished = {  # a vote never revealed, or colluding against an honest majority of the voters
        a
        for r in report.rounds
        for a in r.voters
        if a in attackers and (voter_attack == "no_reveal" or 2 * len(attackers & set(r.voters)) < len(r.voters))
    }
    assert punished, f"seed {seed} draws an attacker as a voter"
    for p in report.participants:
        if p.address in punished:
            assert p.slashed_wei > 0, p
    replay_in_process(report, **{k: v for k, v in options.items() if k != "rounds"})


def test_aggregate_mode_rejects_every_round_with_an_attacker(tmp_path: Path) -> None:
    report, _ = simulate(tmp_path / "run", seed=1, attackers=2, attack="scale:-10", vote_mode="aggregate")
    attackers = set(report.attackers.addresses)
    previous = report.initial["accuracy"]
    for r in report.rounds:
        if attackers & set(r.proposers):
            assert r.accepted is False and r.tally is not None and r.tally[0] < 0
        assert r.metrics["accuracy"] >= (1 - EPS) * previous - 1e-9
        previous = r.metrics["accuracy"]
    assert any(r.accepted is False for r in report.rounds)
    honest_loss = sum(p.stake_start_wei - p.stake_end_wei for p in report.participants if p.honest)
    assert honest_loss > 0  # the paper's collective rule slashes honest proposers alongside attackers


def test_same_seed_same_roles_and_accuracy_and_fedloge_keeps_local_heads_home(tmp_path: Path) -> None:
    """Two FedLoGe runs with one seed agree; FedLoGe runs governed and uploads no local head."""
    from fedledger import codec

    first, _ = simulate(tmp_path / "a", strategy="fedloge", seed=5, clients=4, rounds=1)
    second, _ = simulate(tmp_path / "b", strategy="fedloge", seed=5, clients=4, rounds=1)
    assert [(r.proposers, r.voters) for r in first.rounds] == [(r.proposers, r.voters) for r in second.rounds]
    assert abs(first.final["accuracy"] - second.final["accuracy"]) <= 1e-6
    assert first.chain.task == second.chain.task
    assert first.strategy == "fedloge" and first.final["reporting_clients"] == 4
    for key in ("accuracy_ssec", "accuracy_aux", "accuracy_head", "accuracy_tail", "personalized_accuracy"):
        assert key in first.final, key
    blobs = [p for p in (tmp_path / "a" / "gateway" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) >= 3  # the initial model, the updates, the published model
    for blob in blobs:  # everything any party uploaded: backbone and g_aux only
        arrays = codec.decode(blob.read_bytes())
        assert all(name.startswith(("backbone.", "head.")) for name in arrays), list(arrays)


def test_without_governance_the_same_strategy_runs_as_plain_flower(tmp_path: Path) -> None:
    """Through the command line: a summary table, the --json copy, and no warnings printed."""
    command = ["simulate", "--no-governance", "--seed", "2", "--clients", "4", "--rounds", "2"]
    command += ["--out", str(tmp_path / "run"), "--json", str(tmp_path / "report.json")]
    result = subprocess.run(
        [sys.executable, "-m", "fedledger.cli", *command], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "final accuracy" in result.stdout and "governance off" in result.stdout
    assert "warning" not in (result.stdout + result.stderr).lower()
    report = Report.model_validate_json((tmp_path / "report.json").read_text())
    assert not report.governance and report.chain.kind == "none" and report.vote_mode is None
    assert all(r.accepted is None and r.tally is None and r.voters == [] for r in report.rounds)
    assert all(len(r.proposers) == 2 for r in report.rounds)  # half of the nodes train, as with governance
    assert report.final["accuracy"] > report.initial["accuracy"] + 0.3
    assert not (tmp_path / "run" / "chain").exists()


def test_fedkseed_runs_governed_with_sparse_sync_under_18_kb(tmp_path: Path) -> None:
    steps = 40
    report, _ = simulate(
        tmp_path / "run", strategy="fedkseed", strategy_options=f"steps={steps}", seed=2, clients=4, rounds=2
    )
    assert report.strategy == "fedkseed" and all(r.accepted for r in report.rounds)
    assert "rouge_l" in report.final and report.final["loss"] < 3.0  # the pretrained tiny GPT, tuned
    for r in report.rounds:
        assert set(r.traffic) == set(r.proposers) | set(r.voters)
        for address, usage in r.traffic.items():
            assert 0 < usage.total < 18_000, (r.round, address, usage)
            if address in r.proposers:  # (seed index, g) pairs: 8 bytes a step, plus the signed commitment
                assert steps * 8 < usage.gateway_up < steps * 8 + 1_000, usage
    verified = audit("--run", str(tmp_path / "run"), "--json", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["disagreements"] == []


def test_fedsto_runs_governed_uploading_backbones_then_whole_models(tmp_path: Path) -> None:
    """Phase 1 then phase 2 under governance; a scaled update is voted down by label-free voters."""
    from fedledger import codec

    report, _ = simulate(
        tmp_path / "run", strategy="fedsto", strategy_options="selective_rounds=1,local_epochs=1",
        seed=4, clients=4, rounds=2, attackers=2, attack="scale:-10",
    )  # fmt: skip
    assert report.task == "detdigits" and report.strategy == "fedsto"
    assert {"map50", "map50_clear", "map50_low_contrast", "map50_streaks", "map50_salt"} <= set(report.final)
    # Two attackers of four: some round draws one as a proposer whatever the chain's seeds (which
    # follow the warm-up model's hash, so the installed libraries), unless both rounds draw the
    # two honest nodes (1 in 36).
    attackers = set(report.attackers.addresses)
    assert any(attackers & set(r.proposers) for r in report.rounds), "no attacker was drawn as a proposer"
    for r in report.rounds:
        assert attackers & set(r.proposers) <= set(r.rejected), (r.round, r.rejected)
    # A voter that never trained takes the starting model itself as teacher, which matches its own
    # pseudo labels best, so honest updates may fail (docs/fedsto.md "Voting without labels"):
    # where every voter has trained (proposed before), exactly the attackers' updates fail.
    trained: set[str] = set()
    for r in report.rounds:
        if set(r.voters) <= trained:
            assert set(r.rejected) == attackers & set(r.proposers), (r.round, r.rejected)
            assert r.accepted == bool(set(r.proposers) - attackers)  # the honest updates went through
        trained |= set(r.proposers)
    kinds = set()
    for blob in (p for p in (tmp_path / "run" / "gateway" / "blobs").rglob("*") if p.is_file()):
        names = list(codec.decode(blob.read_bytes()))
        kinds.add("backbone" if all(n.startswith("backbone.") for n in names) else "whole")
    assert kinds == {"backbone", "whole"}  # phase-1 updates, and phase-2 updates and global models
    verified = audit("--run", str(tmp_path / "run"), "--json", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    """Even started as `fedledger simulate &` by a non-interactive shell, which ignores SIGINT in it.

    Python keeps an inherited SIG_IGN, so without its own handler the run went on to the end and
    exited 0 (seen in CI runs started in the background).
    """
    out = tmp_path / "run"
    command = [sys.executable, "-m", "fedledger.cli", "simulate", "--out", str(out), "--clients", "4", "--rounds", "3"]
    process = subprocess.Popen(
        # What a non-interactive shell does; a trap, not preexec_fn, which crashes children of a
        # process using gRPC (fedledger.processes.dying_with_parent).
        ["sh", "-c", 'trap "" INT; exec "$0" "$@"', *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    progress = out / "server" / "progress.jsonl"
    while not (progress.is_file() and "opening" in progress.read_text()):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    marker = json.loads((out / "run.json").read_text())["marker"]
    assert marked_pids(marker)  # gateway, SuperLink, simulation, Ray ...
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    time.sleep(1)
    assert marked_pids(marker) == []
    assert os.path.isdir(out)


@pytest.mark.anvil
def test_on_an_anvil_node_a_silent_node_does_not_stall_the_round(anvil_url: str, tmp_path: Path) -> None:
    report, _ = simulate(
        tmp_path / "run", seed=3, clients=4, rounds=1, attackers=1, attack="silent", chain=anvil_url,
        training_duration=8, voting_duration=8, reveal_duration=8,
    )  # fmt: skip
    assert report.chain.kind == "rpc" and report.chain.chain_id == 31337
    (silent,) = report.attackers.addresses
    (round_1,) = report.rounds
    assert round_1.accepted is not None and round_1.gas_used > 0
    person = next(p for p in report.participants if p.address == silent)
    if silent in round_1.proposers:
        assert person.slashed_wei > 0  # a proposer that never commits is slashed
    else:
        assert person.slashed_wei == 0 and person.rewarded_wei == 0  # an absent voter is neutral
    verified = audit("--run", str(tmp_path / "run"), "--json", "verify")
    assert verified.returncode == 0 and json.loads(verified.stdout)["disagreements"] == []
