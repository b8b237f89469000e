"""50 concurrent clients in one round: every action lands on chain, in few batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gateway_load import run


@pytest.mark.slow
def test_fifty_concurrent_clients(tmp_path: Path) -> None:
    figures = run(clients=50, window=2.0, data_dir=tmp_path / "gateway")
    print("\ngateway load:", json.dumps(figures))
    assert figures["registered_on_chain"] == 50
    assert figures["update_commitments_on_chain"] == figures["proposers"] == 25
    assert figures["vote_commitments_on_chain"] == figures["reveals_on_chain"] == figures["voters"] == 25
    assert figures["rejected_on_chain"] == 0 and figures["all_included"]
    assert sum(figures["batch_sizes"]) == figures["relayed_actions"] == 75
    # Batching works: far fewer transactions than actions.
    assert len(figures["batch_sizes"]) <= 15
