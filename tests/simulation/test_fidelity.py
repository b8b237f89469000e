"""bench.fidelity's quick mode: every paper claim it checks points the paper's way (one seed, fewer rounds)."""

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
    # The directions the quick scale must show (the bounds themselves are for the full run).
    assert rows["FedLoGe beats FedAvg / personalised accuracy"]["holds"]  # 12 rounds: the tail is still noise
    assert {"FedLoGe beats FedAvg / generic accuracy", "FedLoGe beats FedAvg / tail-class accuracy"} <= set(rows)
    assert rows["FedSTO beats " + fidelity.fedsto_compare.SERVER_ONLY + " / mean client mAP@0.5"]["holds"]
    assert "FedSTO beats " + fidelity.fedsto_compare.NAIVE + " / mean client mAP@0.5" in rows  # 8 rounds: too close
    assert "gap_closed" in rows["FedSTO closes >= 70 % of the gap / gap closed"]
    kseed = rows["FedKSeed moves <= 1/100 of FedAvg's bytes / proposer bytes per round"]
    assert kseed["holds"] and kseed["ours_mean"] * 100 <= kseed["baseline_mean"]
    assert rows["FedKSeed learns at least half of FedAvg's gain / held-out loss drop"]["ours_mean"] > 0
    assert payload["wall_s"] < 600
