"""bench.fidelity's quick mode: each paper claim its scale can show points the paper's way.

What is asserted, and over how many seeds, follows five-seed measurements at the quick scale
(docs/fedloge.md, docs/fedsto.md, docs/fedkseed.md): a claim whose one-seed direction flips
between seeds is asserted on a mean over seeds, or only reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import fidelity

pytestmark = pytest.mark.slow


def test_a_row_holds_by_its_direction_or_its_bound() -> None:
    row = fidelity.Row("c", "p", "m", "ours", "base", [0.5, 0.7], [0.4, 0.6])
    assert row.holds()
    row.higher_is_better = False
    assert not row.holds()
    bounded = fidelity.Row("c", "p", "m", "ours", "base", [0.65, 0.7], [1.0, 1.0], threshold=0.7)
    assert not bounded.holds() and bounded.as_json([0, 1])["ours_std"] > 0


@pytest.mark.timeout(900)
def test_quick_mode_every_claim_points_the_papers_way(tmp_path: Path) -> None:
    out = tmp_path / "fidelity.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.fidelity", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
        cwd=Path(fidelity.__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    rows = {row["claim"] + " / " + row["metric"]: row for row in payload["rows"]}
    for row in payload["rows"]:
        for key in ("claim", "metric", "ours_mean", "ours_std", "baseline_mean", "seeds"):
            assert key in row, (key, row["claim"])
    assert payload["seeds"] == [0] and payload["quick"]
    # The directions the quick scale shows (the bounds themselves are for the full run).
    # FedLoGe, 12 governed rounds, seeds 0-4 (docs/fedloge.md): that it beats FedAvg is not a
    # one-seed fact at this scale (personalised accuracy -0.9 to +5.6 points per seed, generic and
    # tail either way); the full run shows it. What holds on every seed: FedLoGe's generic model
    # learns (0.841-0.855) and its personalised models are FedAvg's or better within 0.9 points.
    personalised = rows["FedLoGe beats FedAvg / personalised accuracy"]
    assert personalised["ours_mean"] >= personalised["baseline_mean"] - 0.02
    assert rows["FedLoGe beats FedAvg / generic accuracy"]["ours_mean"] >= 0.8
    assert "FedLoGe beats FedAvg / tail-class accuracy" in rows
    # FedSTO, 8 rounds: above server-only by 0.19-0.26 mAP on each of seeds 0-4.
    assert rows["FedSTO beats " + fidelity.fedsto_compare.SERVER_ONLY + " / mean client mAP@0.5"]["holds"]
    assert "FedSTO beats " + fidelity.fedsto_compare.NAIVE + " / mean client mAP@0.5" in rows  # 8 rounds: too close
    assert "gap_closed" in rows["FedSTO closes >= 70 % of the gap / gap closed"]
    kseed = rows["FedKSeed moves <= 1/100 of FedAvg's bytes / proposer bytes per round"]
    assert kseed["holds"] and kseed["ours_mean"] * 100 <= kseed["baseline_mean"]
    assert rows["FedKSeed learns at least half of FedAvg's gain / held-out loss drop"]["ours_mean"] > 0
    assert payload["wall_s"] < 600
