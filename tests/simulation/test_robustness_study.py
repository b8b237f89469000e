"""bench.robustness --quick: governed voting beats plain FedAvg under attack, and attacking loses money."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.robustness import main

pytestmark = pytest.mark.slow


def test_quick_study_governed_beats_fedavg_and_every_attacker_loses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study.json"
    assert main(["--quick", "--json", str(out), "--markdown"]) == 0
    study = json.loads(out.read_text())
    assert "| attack | eta | partition | FedAvg | governed |" in capsys.readouterr().out
    cells = {(c["attack"], c["partition"], c["defence"]): c for c in study["cells"]}
    assert len(cells) == 8 and study["quick"] and study["runs"] == 12
    for c in study["cells"]:
        for key in ("attack", "voter_attack", "eta", "partition", "defence", "seeds", "accuracy", "clean_accuracy"):
            assert key in c
        assert c["eta"] == 0.4 and c["seeds"] == [0]
    for partition in ("iid", "dirichlet:0.5"):
        governed, plain = cells[("label_flip", partition, "governed")], cells[("label_flip", partition, "fedavg")]
        assert governed["accuracy"]["mean"] > plain["accuracy"]["mean"], partition
        for attack in ("label_flip", "sign_flip"):
            cell = cells[(attack, partition, "governed")]
            assert cell["attacker_net_wei"] < 0, cell  # the best-off attacker still lost money
            assert cell["honest_net_wei"] > 0 and cell["recall"] >= 0.9, cell


def test_the_study_runs_on_another_task_and_its_partitions() -> None:
    """--task / --partitions: the long-tailed digits under one partition, both defences."""
    from bench.robustness import run_study

    study = run_study(
        quick=True,
        rounds=3,
        workers=1,
        attacks=(("sign_flip", "honest"),),
        task="ltdigits",
        partitions=("dirichlet:0.3",),
    )
    assert study["task"] == "ltdigits" and study["partitions"] == ["dirichlet:0.3"]
    cells = {c["defence"]: c for c in study["cells"]}
    assert set(cells) == {"fedavg", "governed"} and all(c["partition"] == "dirichlet:0.3" for c in cells.values())
    assert cells["governed"]["recall"] is not None and cells["fedavg"]["recall"] is None
