"""A local anvil chain that outlives the command starting it: ``fedledger chain up|down``.

``up`` starts anvil in a session of its own and records it in ``HOME/chain.json`` (PID, URL,
state file, executable); ``down`` stops exactly that process group, after checking that the
PID still runs that executable (a recycled PID is never signalled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .anvil import AnvilNode

DEFAULT_HOME = Path(".fedledger")


class LocalChainError(RuntimeError):
    """The local chain cannot be started or stopped as asked."""


class ChainRecord(BaseModel):
    """What ``chain up`` started."""

    model_config = ConfigDict(frozen=True)

    pid: int
    port: int
    url: str
    executable: str
    state_file: str | None = None
    log_file: str


def record_path(home: Path) -> Path:
    """Where ``chain up`` records the node it started."""
    return home / "chain.json"


def read_record(home: Path) -> ChainRecord | None:
    """The recorded chain, or None if there is none."""
    path = record_path(home)
    if not path.is_file():
        return None
    try:
        return ChainRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LocalChainError(f"{path} is not a chain record ({exc}); delete it if no chain runs") from exc


def is_running(record: ChainRecord) -> bool:
    """True when the recorded PID still runs the recorded anvil executable."""
    try:
        cmdline = Path(f"/proc/{record.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and os.path.basename(cmdline[0].decode(errors="replace")) == os.path.basename(
        record.executable
    )


def chain_up(home: Path, port: int = 8545, state_file: Path | None = None, accounts: int = 10) -> ChainRecord:
    """Start anvil on 127.0.0.1:``port`` (loading and dumping ``state_file`` if given) and record it.

    Raises:
        FileNotFoundError: anvil is not installed (the message names the install command).
        LocalChainError: a recorded chain still runs, or anvil did not start.
    """
    previous = read_record(home)
    if previous is not None and is_running(previous):
        raise LocalChainError(f"a chain started here already runs at {previous.url} (pid {previous.pid})")
    home.mkdir(parents=True, exist_ok=True)
    log_file = home / "anvil.log"
    node = AnvilNode(
        port=port, state_file=state_file.resolve() if state_file else None, accounts=accounts, log_file=log_file
    )
    command = node.command()  # raises FileNotFoundError with the install hint
    try:
        node.start()
    except RuntimeError as exc:
        raise LocalChainError(f"{exc}; see {log_file}") from exc
    assert node.process is not None
    record = ChainRecord(
        pid=node.process.pid,
        port=node.port,
        url=node.url,
        executable=command[0],
        state_file=str(node.state_file) if node.state_file else None,
        log_file=str(log_file),
    )
    tmp = record_path(home).with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(record_path(home))
    return record


def chain_down(home: Path, timeout: float = 15.0) -> ChainRecord | None:
    """Stop the chain ``chain_up`` recorded in ``home`` (SIGTERM, so anvil dumps its state; SIGKILL after ``timeout``).

    Returns the stopped chain's record, or None if no chain was recorded or it had already exited.
    """
    record = read_record(home)
    if record is None:
        return None
    running = is_running(record)
    if running:
        _signal_group(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_running(record) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_running(record):
            _signal_group(record.pid, signal.SIGKILL)
    record_path(home).unlink(missing_ok=True)
    return record if running else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group anvil leads (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
