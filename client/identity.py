"""Which key a node acts with: a derived dev key in simulations, a keystore in live use."""

from __future__ import annotations

from pathlib import Path

from eth_account.signers.local import LocalAccount

from fedledger.deploy.chain import dev_key
from fedledger.keys import load_key


def node_key(keys: str, partition_id: int) -> LocalAccount:
    """The key of simulated client ``partition_id``.

    ``keys == "dev"``: dev key ``partition_id + 1`` (0 is the coordinator), funded by the
    embedded gateway. Otherwise ``keys`` is a folder holding ``node-<partition_id>.json``
    keystores whose password is in ``$FEDLEDGER_KEY_PASSWORD``.
    """
    if keys == "dev":
        return dev_key(partition_id + 1)
    return load_key(Path(keys) / f"node-{partition_id}.json")


def coordinator_key(keys: str, keystore: str = "") -> LocalAccount:
    """The coordinator's key: ``keystore`` if given, else dev key 0 or ``coordinator.json`` in the keys folder.

    Keystore passwords come from ``$FEDLEDGER_KEY_PASSWORD``.
    """
    if keystore:
        return load_key(Path(keystore))
    if keys == "dev":
        return dev_key(0)
    return load_key(Path(keys) / "coordinator.json")
