"""Drive Flower's own processes: a SuperLink, the app folder ``flwr run`` submits, and the run's progress.

Shared by ``fedledger simulate`` (a SuperLink in simulation mode) and ``fedledger coordinate``
(a SuperLink that live nodes join). The ServerApp reports its progress in
``OUT/server/progress.jsonl`` and writes ``OUT/server/summary.json`` last.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fedledger.config import RunSettings
from fedledger.deploy.anvil import free_port
from fedledger.errors import CommandError
from fedledger.processes import MARKER_ENV, ManagedProcess

FEDERATION = "fedledger"
"""Name of the SuperLink connection written to ``FLWR_HOME/config.toml``."""


def flower_env(home: Path, marker: str) -> dict[str, str]:
    """The environment for Flower's processes (this one's, plus): offline, quiet, in ``home``, carrying ``marker``."""
    env = dict(os.environ)
    env.update(
        {
            MARKER_ENV: marker,
            "FLWR_HOME": str(home),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # SuperExec looks for new runs every second by default; a run should not wait for it.
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
            "RAY_DEDUP_LOGS": "0",
            "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
        }
    )
    return env


def flower_bin(name: str) -> str:
    """A Flower command from this Python's environment (not whatever else is on PATH)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        raise CommandError(f"{name} not found: is flwr installed in this environment?")
    return found


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def superlink_command(database: Path, port: int, health_port: int, *, simulation: bool) -> list[str]:
    """``flower-superlink`` on 127.0.0.1:``port`` (nodes, ``flwr run`` and its health at ``/health``).

    Its state (registered nodes, runs) lives in ``database``: a SuperLink restarted on the same
    file knows its nodes again, and they reconnect by themselves.
    """
    mode = ["--simulation"] if simulation else []
    return [
        flower_bin("flower-superlink"), "--insecure", *mode,
        "--isolation", "subprocess", "--disable-runtime-dependency-installation",
        "--host", "127.0.0.1", "--port", str(port),
        "--health-server-address", f"127.0.0.1:{health_port}",
        "--database", str(database),
    ]  # fmt: skip


def start_superlink(
    start: Callable[[list[str]], ManagedProcess],
    home: Path,
    database: Path,
    port: int,
    *,
    simulation: bool,
    timeout: float,
    error: Callable[[str], Exception] = CommandError,
) -> str:
    """Start a SuperLink on 127.0.0.1:``port`` with ``start(command)``, point ``flwr`` (``FLWR_HOME=home``) at it.

    Returns its address once it answers; raises ``error(message)`` if it exits or ``timeout`` passes first.
    """
    address = f"127.0.0.1:{port}"
    write_flwr_config(home, address)
    database.parent.mkdir(parents=True, exist_ok=True)
    superlink = start(superlink_command(database.resolve(), port, free_port(), simulation=simulation))
    wait_until(lambda: http_ok(f"http://{address}/health"), superlink, "the Flower SuperLink", timeout, error)
    return address


def write_flwr_config(home: Path, address: str) -> None:
    """Point ``flwr`` (with ``FLWR_HOME=home``) at the SuperLink at ``address``."""
    home.mkdir(parents=True, exist_ok=True)
    connection = f'[superlink.{FEDERATION}]\naddress = "{address}"\ninsecure = true\n'
    (home / "config.toml").write_text(f'[superlink]\ndefault = "{FEDERATION}"\n\n' + connection)


def write_app(folder: Path, settings: RunSettings, description: str) -> Path:
    """A Flower app folder whose run config is ``settings`` (the components are fedledger's installed apps)."""
    folder.mkdir(parents=True, exist_ok=True)
    config_lines = [f"{key} = {toml_value(value)}" for key, value in settings.to_run_config().items()]
    (folder / "pyproject.toml").write_text(
        "[project]\n"
        f'name = "fedledger-run"\nversion = "1.0.0"\ndescription = {toml_value(description)}\n'
        'license = "Apache-2.0"\ndependencies = []\n\n'
        '[tool.flwr.app]\npublisher = "fedledger"\n\n'
        "[tool.flwr.app.components]\n"
        'serverapp = "fedledger.server.coordinator.app:app"\nclientapp = "fedledger.client.app:app"\n\n'
        "[tool.flwr.app.config]\n" + "\n".join(config_lines) + "\n"
    )
    return folder


def flwr_run_command(app: Path, *federation_config: str) -> list[str]:
    """``flwr run APP fedledger --stream`` with ``--federation-config`` entries."""
    command = [flower_bin("flwr"), "run", str(app), FEDERATION, "--stream"]
    for entry in federation_config:
        command += ["--federation-config", entry]
    return command


def toml_value(value: object) -> str:
    """A TOML literal for a run-config value."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def follow_run(
    flwr: ManagedProcess,
    server_dir: Path,
    on_event: Callable[[dict[str, object]], None],
    others: list[ManagedProcess],
    stopped: Callable[[str], Exception],
) -> None:
    """Relay the ServerApp's progress events until it wrote its summary or ``flwr run`` exited.

    Raises ``stopped(message)`` if one of ``others`` (SuperLink, gateway, ...) stops meanwhile.
    Flower's own shutdown after the summary is not awaited.
    """
    progress = server_dir / "progress.jsonl"
    summary = server_dir / "summary.json"
    offset = progress.stat().st_size if progress.is_file() else 0  # events of an earlier attempt were relayed

    def relay() -> None:
        """Relay the complete lines appended since the last call (a line being written waits for the next)."""
        nonlocal offset
        if not progress.is_file():
            return
        with progress.open("rb") as file:
            file.seek(offset)
            appended = file.read()
        complete = appended[: appended.rfind(b"\n") + 1]
        offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            on_event(json.loads(line))

    while not summary.exists():
        relay()
        if not flwr.running():
            break
        for process in others:
            if process is not flwr and not process.running():
                raise stopped(f"{process.name} stopped unexpectedly:\n{process.tail()}")
        time.sleep(0.2)
    relay()


def failure_cause(server_dir: Path, flwr: ManagedProcess) -> str:
    """Why a run ended without a summary: the ServerApp's recorded error, else ``flwr run``'s traceback or log."""
    error = server_dir / "error.txt"
    return error.read_text(encoding="utf-8") if error.is_file() else flwr.first_traceback() or flwr.tail()


def wait_until(
    ready: Callable[[], bool],
    process: ManagedProcess,
    what: str,
    timeout: float,
    error: Callable[[str], Exception] = CommandError,
) -> None:
    """Wait until ``ready()``; raise ``error(message)`` if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not process.running():
            raise error(f"{what} exited during start-up:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise error(f"{what} did not start within {timeout:.0f}s:\n{process.tail()}")
        time.sleep(0.1)
