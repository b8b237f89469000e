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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SuperLinkSecurity:
    """TLS and SuperNode authentication of a SuperLink; the default is neither (one machine only).

    With ``cert``/``key`` the SuperLink serves every API over TLS (nodes, ``flwr``, its own
    SuperExec and ServerApp), and ``ca`` is what those clients check it with. With
    ``allowed_nodes`` it runs with ``--enable-supernode-auth``: only SuperNodes whose public
    keys were registered (:func:`register_nodes`) may connect.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    allowed_nodes: tuple[Path, ...] = ()

    @property
    def tls(self) -> bool:
        """Whether the SuperLink serves TLS (a certificate, its key and the CA are all given)."""
        return None not in (self.cert, self.key, self.ca)

    @property
    def root_ca(self) -> Path | None:
        """The CA its clients check it with; None when it speaks plain text."""
        return self.ca if self.tls else None

    def superlink_flags(self) -> list[str]:
        """The ``flower-superlink`` flags for this security."""
        if self.cert is None or self.key is None or self.ca is None:
            flags = ["--insecure"]
        else:
            flags = ["--ssl-ca-certfile", str(self.ca.resolve()), "--ssl-certfile", str(self.cert.resolve())]
            flags += ["--ssl-keyfile", str(self.key.resolve())]
        return flags + (["--enable-supernode-auth"] if self.allowed_nodes else [])


INSECURE = SuperLinkSecurity()


def http_ok(url: str, ca: Path | None = None) -> bool:
    """True when ``url`` answers 200 (an ``https`` URL verified against ``ca``)."""
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def superlink_command(
    database: Path,
    port: int,
    health_port: int,
    *,
    simulation: bool,
    host: str = "127.0.0.1",
    security: SuperLinkSecurity = INSECURE,
) -> list[str]:
    """``flower-superlink`` on ``host``:``port`` (nodes, ``flwr run`` and its health at ``/health``).

    Its state (registered nodes, runs) lives in ``database``: a SuperLink restarted on the same
    file knows its nodes again, and they reconnect by themselves.
    """
    mode = ["--simulation"] if simulation else []
    return [
        flower_bin("flower-superlink"), *security.superlink_flags(), *mode,
        "--isolation", "subprocess", "--disable-runtime-dependency-installation",
        "--host", host, "--port", str(port),
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
    host: str = "127.0.0.1",
    security: SuperLinkSecurity = INSECURE,
) -> str:
    """Start a SuperLink on ``host``:``port`` with ``start(command)``, point ``flwr`` (``FLWR_HOME=home``) at it.

    Returns its address once it answers; raises ``error(message)`` if it exits or ``timeout`` passes first.
    """
    address, ca = f"{host}:{port}", security.root_ca
    write_flwr_config(home, address, ca)
    database.parent.mkdir(parents=True, exist_ok=True)
    command = superlink_command(
        database.resolve(), port, free_port(), simulation=simulation, host=host, security=security
    )
    superlink = start(command)
    health = f"{'https' if ca else 'http'}://{address}/health"
    wait_until(lambda: http_ok(health, ca), superlink, "the Flower SuperLink", timeout, error)
    return address


def register_nodes(home: Path, public_keys: tuple[Path, ...], env: dict[str, str]) -> list[str]:
    """Register each SuperNode public key with the SuperLink ``flwr`` (``FLWR_HOME=home``) points at.

    A key registered before (the SuperLink's database outlives it) counts as done. Returns one
    line per key; raises :class:`CommandError` with Flower's answer for a key it refuses.
    """
    import subprocess

    lines = []
    for key in public_keys:
        done = subprocess.run(
            [flower_bin("flwr"), "supernode", "register", str(key.resolve()), FEDERATION, "--format", "json"],
            capture_output=True, text=True, check=False, env=env | {"FLWR_HOME": str(home)},
        )  # fmt: skip
        answer = done.stdout + done.stderr
        if done.returncode == 0:
            lines.append(f"{key}: admitted")
        elif "already in use" in answer:
            lines.append(f"{key}: admitted already")
        else:
            raise CommandError(f"the SuperLink refused SuperNode key {key}: {answer.strip()[-400:]}")
    return lines


def write_flwr_config(home: Path, address: str, root_ca: Path | None = None) -> None:
    """Point ``flwr`` (with ``FLWR_HOME=home``) at the SuperLink at ``address`` (over TLS checked with ``root_ca``)."""
    home.mkdir(parents=True, exist_ok=True)
    security = "insecure = true\n" if root_ca is None else f'root-certificates = "{root_ca.resolve()}"\n'
    connection = f'[superlink.{FEDERATION}]\naddress = "{address}"\n' + security
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
