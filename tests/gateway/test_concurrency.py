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


@pytest.mark.anvil
@pytest.mark.slow
def test_client_processes_against_a_gateway_on_anvil_lose_and_duplicate_nothing() -> None:
    from bench.gateway_load import run_processes

    from ..conftest import require_anvil

    require_anvil()
    figures = run_processes(12, window=1.0)
    acknowledged, on_chain = figures["acknowledged"], figures["on_chain"]
    assert figures["registered"] == 12 and figures["finalized"]
    assert figures["lost_actions"] == 0 and figures["duplicated_actions"] == 0
    assert on_chain == acknowledged and acknowledged["UpdateCommitted"] == figures["proposers"] > 1
    assert max(figures["mean_batch_size"].values()) > 1  # the relayer batches what queued together
    # The same actions, each included after its ack (the ack comes once it is logged, before the flush).
    assert figures["inclusion_p50_s"] >= figures["ack_p50_s"] > 0
