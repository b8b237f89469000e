"""The relayer's write-ahead log: an action is acknowledged only once it is on disk.

A gateway that answered "queued" and then died before its batch was mined used to drop the
action, and with it a proposer's commitment (the proposer was then slashed for a commitment it
made). Now every checked action is written to ``<data dir>/actions-<chain id>-<task>.db``
(sqlite, WAL journal, ``synchronous=FULL``: the commit is fsync'd) before the caller hears
anything, and marked done with its outcome when its batch is mined. On start the gateway replays every action not marked
done, after checking the chain for it, so nothing is relayed twice. An action is identified by
the keccak256 of its type, message and signature: a client that sends the same signed action
again (after a restart, or a lost reply) is given the recorded outcome, never a second
transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from eth_utils import keccak

from fedledger.contracts import typed_data as td

from . import checks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    digest BLOB PRIMARY KEY,
    action TEXT NOT NULL,
    signer TEXT NOT NULL,
    message_json TEXT NOT NULL,
    signature BLOB NOT NULL,
    logged_at REAL NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    included INTEGER,
    reason TEXT,
    transaction_hash BLOB,
    block_number INTEGER,
    batch_size INTEGER
)
"""


def _canonical(signed: td.SignedAction) -> str:
    return json.dumps(checks.jsonable(signed.message), sort_keys=True, separators=(",", ":"))


def action_digest(signed: td.SignedAction, canonical: str | None = None) -> bytes:
    """The identity of a signed action: keccak256 of its type name, canonical message and signature."""
    message = canonical if canonical is not None else _canonical(signed)
    return keccak(signed.action.name.encode() + b"\0" + message.encode() + b"\0" + signed.signature)


@dataclass(frozen=True)
class Outcome:
    """What happened to one relayed action (as its batch's receipt, or the log, tells)."""

    included: bool
    reason: str
    transaction_hash: bytes
    block_number: int
    batch_size: int


class ActionLog:
    """Durable record of the relayer's actions (one sqlite file; safe across threads)."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the log at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # every commit reaches the disk before we answer
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def append(self, signed: td.SignedAction) -> bytes:
        """Write ``signed`` durably (a no-op when it is logged already); return its digest."""
        message = _canonical(signed)
        digest = action_digest(signed, message)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO actions (digest, action, signer, message_json, signature, logged_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (digest, signed.action.name, signed.signer, message, signed.signature, time.time()),
            )
        return digest

    def complete(self, outcomes: Iterable[tuple[bytes, Outcome]]) -> None:
        """Mark actions done with their outcomes, in one transaction."""
        rows = [
            (int(o.included), o.reason, o.transaction_hash, o.block_number, o.batch_size, digest)
            for digest, o in outcomes
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE actions SET done = 1, included = ?, reason = ?, transaction_hash = ?, block_number = ?,"
                " batch_size = ? WHERE digest = ?",
                rows,
            )
            self._db.execute("COMMIT")

    def outcome(self, digest: bytes) -> Outcome | None:
        """The recorded outcome of a finished action (None: unknown, or not finished)."""
        with self._lock:
            row = self._db.execute(
                "SELECT included, reason, transaction_hash, block_number, batch_size FROM actions"
                " WHERE digest = ? AND done = 1",
                (digest,),
            ).fetchone()
        if row is None:
            return None
        return Outcome(bool(row[0]), row[1] or "", bytes(row[2] or b""), int(row[3] or 0), int(row[4] or 0))

    def unfinished(self) -> list[td.SignedAction]:
        """The actions logged but not marked done, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT action, message_json, signature FROM actions WHERE done = 0 ORDER BY logged_at, rowid"
            ).fetchall()
        names = tuple(td.ACTION_TYPES)
        return [checks.parse_signed_action(name, message, bytes(sig), names) for name, message, sig in rows]
