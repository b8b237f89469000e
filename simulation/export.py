"""Save what an audit needs of a run's chain: its events, parameters and final balances.

The embedded chain lives only inside the gateway process; before the gateway stops,
``fedledger simulate`` writes ``<run>/chain/`` (this module) next to ``<run>/gateway/blobs``, so
``fedledger audit --run <run>`` can replay and verify the run later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedledger.server.gateway.client import GatewayClient, event_args


def export_chain(client: GatewayClient, out: Path) -> dict[str, tuple[int, int, int, int]]:
    """Write events.json, task.json and state.json; return address -> (stake start, end, rewarded, slashed)."""
    out.mkdir(parents=True, exist_ok=True)
    events = client.events()
    view = client.task()
    info = client.task_info()
    raw = [
        {
            "name": e.name,
            "args": event_args(e),
            "block_number": e.block_number,
            "transaction_hash": "0x" + e.transaction_hash.hex(),
            "log_index": e.log_index,
            "topics": ["0x" + t.hex() for t in e.topics],
            "data": "0x" + e.data.hex(),
        }
        for e in events
    ]
    _write(out / "events.json", raw)
    _write(
        out / "task.json",
        {"task": view.task_address, "chain_id": view.chain_id, "config": json.loads(view.config.model_dump_json())},
    )
    money: dict[str, list[int]] = {}
    for e in raw:
        args = e["args"]
        if e["name"] == "Registered":
            money.setdefault(args["account"], [int(args["stake"]), 0, 0, 0])
        elif e["name"] == "Rewarded":
            money.setdefault(args["account"], [0, 0, 0, 0])[2] += int(args["amount"])
        elif e["name"] == "Slashed":
            money.setdefault(args["account"], [0, 0, 0, 0])[3] += int(args["amount"])
    members: dict[str, dict[str, int]] = {}
    for address in money:
        account = client.account(address)
        members[address] = {"stake": int(account.stake_wei), "owed": int(account.owed_wei)}
        money[address][1] = int(account.stake_wei)
    _write(out / "state.json", {"reward_pool": int(info.reward_pool_wei), "members": members})
    return {a: (m[0], m[1], m[2], m[3]) for a, m in money.items()}


def _write(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
