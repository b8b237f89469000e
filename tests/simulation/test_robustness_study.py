"""bench.robustness --quick: governed voting beats plain FedAvg under attack, and attacking loses money."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from bench.robustness import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """``--quick --markdown --json``: the study and what it printed."""
    out = tmp_path_factory.mktemp("quick") / "study.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--quick", "--json", str(out), "--markdown"]) == 0
    return json.loads(out.read_text()), printed.getvalue()


def test_quick_study_governed_beats_fedavg_and_every_attacker_loses(quick: tuple[dict[str, Any], str]) -> None:
    study, printed = quick
    assert "| task | clients | attack | eta | partition | FedAvg | governed |" in printed
    assert "| clean run: task | clients | partition | defence |" in printed
    cells = {(c["task"], c["attack"], c["partition"], c["defence"]): c for c in study["cells"]}
    assert len(cells) == 12 and study["quick"] and study["runs"] == 18
    assert study["grid"] == [["digits", 10, "iid"], ["digits", 10, "dirichlet:0.5"], ["ltdigits", 10, "dirichlet:0.1"]]
    for c in study["cells"]:
        for key in ("task", "clients", "attack", "voter_attack", "eta", "partition", "defence", "accuracy"):
            assert key in c
        assert c["eta"] == 0.4 and c["seeds"] == [0] and c["clients"] == 10
        if c["defence"] == "governed":  # what the votes did to the honest, with and without attackers
            assert c["honest_ejected"] >= 0 and c["clean_honest_ejected"] >= 0
            assert 0 <= c["clean_false_rejection"] <= 1 and c["clean_honest_net_min_wei"] is not None
    for partition in ("iid", "dirichlet:0.5"):
        governed, plain = (
            cells[("digits", "label_flip", partition, "governed")],
            cells[("digits", "label_flip", partition, "fedavg")],
        )
        assert governed["accuracy"]["mean"] > plain["accuracy"]["mean"], partition
        for attack in ("label_flip", "sign_flip"):
            cell = cells[("digits", attack, partition, "governed")]
            assert cell["attacker_net_wei"] < 0, cell  # the best-off attacker still lost money
            assert cell["honest_net_wei"] > 0 and cell["recall"] >= 0.9, cell


def test_the_study_runs_on_another_task_and_its_partitions() -> None:
    """--tasks / --partitions: the long-tailed digits under one partition, both defences."""
    from bench.robustness import run_study

    study = run_study(
        quick=True,
        rounds=3,
        workers=1,
        attacks=(("sign_flip", "honest"),),
        tasks=("ltdigits",),
        partitions=("dirichlet:0.3",),
    )
    assert study["tasks"] == ["ltdigits"] and study["partitions"] == ["dirichlet:0.3"] and study["clients"] == [10]
    cells = {c["defence"]: c for c in study["cells"]}
    assert set(cells) == {"fedavg", "governed"} and all(c["partition"] == "dirichlet:0.3" for c in cells.values())
    assert cells["governed"]["recall"] is not None and cells["fedavg"]["recall"] is None


def test_runs_started_longest_first_come_back_in_the_study_s_order() -> None:
    """Two workers play the longest runs first (``_cost``); every cell still gets its own runs' figures."""
    from bench.robustness import _cost, run_study, scenarios

    where = (("digits", 10, "iid"), ("mnist", 10, "dirichlet:0.5"))
    attacked, clean = scenarios(True, 1, where, 2, ("fedavg", "governed"), (("sign_flip", "honest"),))
    costs = [_cost(s) for _, s in attacked + clean]
    assert max(costs) > min(costs) and costs != sorted(costs, reverse=True)  # reordering is exercised
    kwargs: dict[str, Any] = {
        "quick": True, "rounds": 2, "defences": ("fedavg", "governed"),
        "attacks": (("sign_flip", "honest"),), "where": where,
    }  # fmt: skip
    apart, alone = run_study(workers=2, **kwargs), run_study(workers=1, **kwargs)
    strip = [{k: v for k, v in c.items() if k != "wall_s"} for c in apart["cells"]]
    assert strip == [{k: v for k, v in c.items() if k != "wall_s"} for c in alone["cells"]]


def test_a_clean_only_baseline_plays_no_attacked_run_and_its_accuracy_is_reported() -> None:
    """The --heterogeneity preset keeps plain FedAvg for the clean-run comparison only."""
    from bench.robustness import HETEROGENEITY, markdown, run_study, scenarios

    assert HETEROGENEITY["clean_only"] == ("fedavg",)
    where = (("digits", 10, "iid"),)
    defences, attacks = ("fedavg", "median", "governed"), (("sign_flip", "honest"), ("none", "accept_all"))
    attacked, clean = scenarios(False, 1, where, 2, defences, attacks, clean_only=("fedavg",))
    assert {s.defence for _, s in attacked} == {"median", "governed"}
    assert {s.defence for _, s in clean} == set(defences)
    study = run_study(
        seeds=1, rounds=2, workers=1, defences=defences, attacks=attacks, where=where, clean_only=("fedavg",)
    )
    assert {c["defence"] for c in study["cells"]} == {"median", "governed"}
    baseline = [c for c in study["clean"] if c["defence"] == "fedavg"]
    assert len(baseline) == 1 and 0.0 < baseline[0]["accuracy"] <= 1.0
    row = next(line for line in markdown(study).splitlines() if line.startswith("| digits | 10 | iid | governed |"))
    assert f"| {baseline[0]['accuracy']:.3f} |" in row


def test_quick_clean_runs_meet_issue_27s_targets(quick: tuple[dict[str, Any], str]) -> None:
    """Clean federations: <= 2 % of honest updates rejected, no honest member ejected, every honest net > 0.

    Measured before the issue's work (``--quick``): digits IID 2.2 % and 1 member ejected (worst
    net -0.09 ETH), Dirichlet 0.5 4.7 % and 1, long-tailed digits on Dirichlet 0.1 11.1 % and 3
    (worst -0.84 ETH). With abstentions, the quorum and ejection by standing: 0 %, none, > +0.6 ETH.
    """
    study, _ = quick
    clean = {(c["task"], c["partition"]): c for c in study["cells"] if c["defence"] == "governed"}
    assert len(clean) == 3
    for where, c in clean.items():
        assert c["clean_false_rejection"] <= 0.02, where
        assert c["clean_honest_ejected"] == 0, where
        assert c["clean_honest_net_min_wei"] > 0, where
        assert c["clean_honest_undecided"] <= 0.2, where  # left out for want of a quorum, not too many


def test_long_tailed_skewed_federation_ejects_no_honest_member() -> None:
    """Issue 27's test: long-tailed digits, Dirichlet 0.1, 10 clients, 20 rounds, no attacker, governed.

    Before the issue's work this very run (seed 0) ejected 8 of its 10 members: voters holding one
    to four validation samples rejected honest updates about classes they did not hold.
    """
    from fedledger.simulation.inprocess import Scenario, play

    result = play(Scenario(task="ltdigits", partition="dirichlet:0.1", clients=10, rounds=20, seed=0))
    assert len(result.rounds) == 20  # the committee never ran dry
    assert [o.ejected for o in result.rounds if o.ejected] == []
    judged = sum(len(o.accepted) + len(o.rejected) + len(o.undecided) for o in result.rounds)
    assert sum(len(o.rejected) for o in result.rounds) <= 0.02 * judged
    assert all(m.net_wei > 0 for m in result.money), [m.net_wei for m in result.money]


def test_canaries_make_voters_that_accept_without_looking_lose_money() -> None:
    """``accept_all`` voters that propose honest updates end with a negative net once canaries run (issue 27).

    Without canaries (the default rate, off) the same voters earn like honest members: the canaries are
    what makes them lose (contracts/canary.py; docs/voting.md, "Canaries").
    """
    from bench.robustness import QUICK_GRID, run_study
    from fedledger.contracts.types import CANARY_STUDY_RATE_BPS

    quick: dict[str, Any] = {
        "quick": True,
        "workers": 1,
        "defences": ("governed",),
        "attacks": (("none", "accept_all"),),
        "where": tuple((t, 10, p) for t, p in QUICK_GRID),
    }
    off = run_study(**quick)
    on = run_study(**quick, canary_rate_bps=CANARY_STUDY_RATE_BPS)
    lazy_off = [c for c in off["cells"] if c["voter_attack"] == "accept_all"]
    lazy_on = [c for c in on["cells"] if c["voter_attack"] == "accept_all"]
    assert len(lazy_on) == len(lazy_off) == 3
    assert all(c["attacker_net_mean_wei"] > 0 for c in lazy_off), [c["attacker_net_mean_wei"] for c in lazy_off]
    assert all(c["attacker_net_wei"] < 0 for c in lazy_on), [c["attacker_net_wei"] for c in lazy_on]
    for c in lazy_on:  # canaries cost honest members nothing: no one ejected, every clean net positive
        assert c["honest_ejected"] == 0 and c["clean_honest_ejected"] == 0
        assert c["clean_honest_net_min_wei"] > 0


def test_colluding_voters_hold_majorities_at_the_hypergeometric_rate_and_gain_nothing_from_a_minority() -> None:
    """Colluding label flippers at 40 %: measured attacker majorities next to their odds (issue 27).

    Where honest members are the majority of an update's reviewers no poisoned update is accepted;
    how often the colluders hold a majority is the draw's doing, within sampling error of the
    hypergeometric odds (rounds are the unit: an update's reviewers are the round's voters here).
    """
    from bench.robustness import run_study

    study = run_study(
        seeds=2,
        workers=1,
        defences=("governed",),
        attacks=(("label_flip", "collude"),),
        where=(("digits", 10, "iid"),),
    )
    (cell,) = [c for c in study["cells"] if c["voter_attack"] == "collude" and c["eta"] == 0.4]
    rounds = 2 * 10
    for measured, odds in (
        (cell["attacker_voter_majority_rounds"], cell["attacker_voter_majority_odds"]),
        (cell["attacker_reviewer_majority_items"], cell["attacker_reviewer_majority_odds"]),
    ):
        assert 0.05 < odds < 0.3, cell  # 4 of 10 attackers, 5 voters a round: about one round in eight
        assert abs(measured - odds) <= 3 * (odds * (1 - odds) / rounds) ** 0.5, cell
    assert cell["attacker_updates_accepted_with_honest_reviewers"] == 0, cell


@pytest.mark.xfail(strict=True, reason="issue 27 (open): a random voter escapes 30 % canaries by luck in 10 rounds")
def test_random_voters_with_honest_updates_lose_money() -> None:
    """``random`` voters that propose honest updates must all end with a negative net (issue 27's target)."""
    from bench.robustness import QUICK_GRID, run_study
    from fedledger.contracts.types import CANARY_STUDY_RATE_BPS

    study = run_study(
        quick=True,
        workers=1,
        defences=("governed",),
        attacks=(("none", "random"),),
        where=tuple((t, 10, p) for t, p in QUICK_GRID),
        canary_rate_bps=CANARY_STUDY_RATE_BPS,
    )
    lazy = [c for c in study["cells"] if c["voter_attack"] == "random"]
    assert lazy and all(c["attacker_net_wei"] < 0 for c in lazy), [c["attacker_net_wei"] for c in lazy]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--tasks", "cifar"], "unknown task 'cifar'; use one of"),
        (["--partitions", "zipf"], "zipf"),
        (["--etas", "0.3,x"], "--etas takes comma-separated attacker shares"),
        (["--etas", "1.5"], "--etas must lie strictly between 0 and 1"),
        (["--attacks", "none+lazy"], "unknown voter attack 'lazy'"),
    ],
)
def test_bad_study_options_name_what_is_accepted_and_run_nothing(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code != 0
    assert says in capsys.readouterr().err
