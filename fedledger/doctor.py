"""``fedledger --version`` and ``fedledger doctor``: what is installed, and what a machine still lacks."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from fedledger import numerics

Status = Literal["ok", "warning", "missing"]
PORTS = {8545: "anvil (`fedledger chain up`)", 9092: "the SuperLink (`fedledger coordinate`)", 50051: "the gateway"}
"""The default ports of the product's servers on 127.0.0.1."""


class Check(BaseModel):
    """One line of ``fedledger doctor``."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def contracts_fingerprint(build_dir: Path | None = None) -> str:
    """The artifacts' fingerprint: keccak256 over every contract's name and (unlinked) creation bytecode."""
    from eth_utils import keccak

    from fedledger.contracts.artifacts import BUILD_DIR, all_artifacts

    folder = build_dir or BUILD_DIR
    artifacts = all_artifacts(folder)
    digest = keccak(b"".join(a.contract_name.encode() + a.bytecode.encode() for a in artifacts.values()))
    compiler = json.loads(json.loads((folder / "FLTask.json").read_text(encoding="utf-8"))["metadata"])["compiler"]
    return f"{len(artifacts)} artifacts, bytecode keccak 0x{digest.hex()[:16]}, solc {compiler['version']}"


def version_text() -> str:
    """What ``fedledger --version`` prints: the package, the contracts it deploys, and the libraries it runs on."""
    from fedledger import __version__

    libraries = ", ".join(f"{name} {_version(name) or 'not installed'}" for name in ("flwr", "web3", "torch"))
    return (
        f"fedledger {__version__}\n"
        f"contracts: {contracts_fingerprint()}\n"
        f"{libraries}; Python {platform.python_version()}"
    )


# ------------------------------------------------------------------------- checks


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check(
        name="Python",
        status="ok" if ok else "missing",
        detail=platform.python_version(),
        fix="" if ok else "install Python 3.11 or newer",
    )


def _torch() -> Check:
    fix = "pip install torch==2.13.0 (the CPU build on this disk; a bare `torch` pulls a CUDA build of several GB)"
    version = _version("torch")
    if version is None:
        return Check(name="torch", status="missing", detail="not installed", fix=fix)
    import torch

    if torch.version.cuda is not None:
        return Check(
            name="torch",
            status="warning",
            detail=f"{version}, a CUDA build (CUDA {torch.version.cuda})",
            fix="pip install torch==2.13.0 for the CPU build",
        )
    return Check(name="torch", status="ok", detail=f"{version}, CPU build")


def _libraries() -> list[Check]:
    checks = []
    for name, wanted in (("flwr", "1.41."), ("web3", "8."), ("grpcio", "")):
        version = _version(name)
        if version is None:
            fix = "pip install -c requirements.lock -e ."
            checks.append(Check(name=name, status="missing", detail="not installed", fix=fix))
        elif not version.startswith(wanted):
            checks.append(
                Check(
                    name=name,
                    status="warning",
                    detail=f"{version} (verified with {wanted}x)",
                    fix="pip install -c requirements.lock -e . (the verified versions)",
                )
            )
        else:
            checks.append(Check(name=name, status="ok", detail=version))
    return checks


def _numerics() -> Check:
    """Whether the CPU code paths are the pinned ones (fedledger.numerics), so seeds replay here as elsewhere."""
    overridden = numerics.unpinned()
    if overridden:
        names = " ".join(f"{k}={v}" for k, v in overridden.items())
        return Check(
            name="CPU code paths",
            status="warning",
            detail=f"{names}: a seed gives other runs here than on other machines",
            fix="unset " + " ".join(overridden),
        )
    return Check(name="CPU code paths", status="ok", detail=f"pinned ({numerics.paths_tag()})")


def _node() -> Check:
    node = shutil.which("node")
    if node is None:
        return Check(
            name="Node.js",
            status="missing",
            detail="no `node` on PATH",
            fix="install Node.js 20 or newer with npm (e.g. `apt-get install nodejs npm`)",
        )
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version.lstrip("v")[:1].isdigit() else 0
    if major < 20:
        return Check(
            name="Node.js",
            status="missing",
            detail=f"{version or 'unknown version'} at {node}",
            fix="install Node.js 20 or newer",
        )
    return Check(name="Node.js", status="ok", detail=f"{version} at {node}")


def _npm_packages() -> list[Check]:
    from fedledger.contracts.compiler import SOLC_VERSION
    from fedledger.contracts.solcjs import find_node_modules, solcjs_version

    modules = find_node_modules()
    if modules is None:
        return [
            Check(name="solcjs", status="missing", detail="no node_modules with the npm `solc` package", fix=_npm_fix())
        ]
    checks = []
    found = solcjs_version(modules)
    checks.append(
        Check(name="solcjs", status="ok", detail=f"{found} in {modules}")
        if found == SOLC_VERSION
        else Check(
            name="solcjs", status="missing", detail=f"{found}, the artifacts need {SOLC_VERSION}", fix=_npm_fix()
        )
    )
    oz = modules / "@openzeppelin" / "contracts" / "package.json"
    if oz.is_file():
        checks.append(
            Check(name="OpenZeppelin", status="ok", detail=json.loads(oz.read_text(encoding="utf-8"))["version"])
        )
    else:
        checks.append(Check(name="OpenZeppelin", status="missing", detail="not in node_modules", fix=_npm_fix()))
    return checks


def _anvil() -> Check:
    from fedledger.deploy.anvil import find_anvil

    anvil = find_anvil()
    if anvil is None:
        return Check(name="anvil", status="missing", detail="not found", fix=_npm_fix())
    try:
        done = subprocess.run([str(anvil), "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return Check(name="anvil", status="missing", detail=f"{anvil} does not start: {exc}", fix=_npm_fix())
    first = (done.stdout or done.stderr).strip().splitlines()[:1]
    if done.returncode != 0:
        return Check(name="anvil", status="missing", detail=f"{anvil} exited {done.returncode}", fix=_npm_fix())
    return Check(name="anvil", status="ok", detail=f"{first[0] if first else 'runs'} ({anvil})")


def _artifacts() -> Check:
    try:
        return Check(name="contracts", status="ok", detail=contracts_fingerprint())
    except (OSError, ValueError, KeyError) as exc:
        return Check(
            name="contracts",
            status="missing",
            detail=f"artifacts unreadable: {exc}",
            fix="reinstall fedledger (`pip install -e .`) or rebuild them (`fedledger contracts compile`)",
        )


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host``:``port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ports() -> list[Check]:
    checks = []
    for port, user in PORTS.items():
        if port_free(port):
            checks.append(Check(name=f"port {port}", status="ok", detail=f"free for {user}"))
        else:
            checks.append(
                Check(
                    name=f"port {port}",
                    status="warning",
                    detail=f"in use (default of {user})",
                    fix=f"stop what listens on 127.0.0.1:{port}, or give that server another --port",
                )
            )
    return checks


CHECKS: list[Callable[[], Check | list[Check]]] = [
    _python,
    _torch,
    _libraries,
    _numerics,
    _artifacts,
    _node,
    _npm_packages,
    _anvil,
    _ports,
]


def run_checks() -> list[Check]:
    """Every check, in order."""
    found: list[Check] = []
    for check in CHECKS:
        result = check()
        found.extend(result if isinstance(result, list) else [result])
    return found


def _npm_fix() -> str:
    """Where ``npm ci`` installs the pinned toolchain: the source checkout this package runs from, if any."""
    root = Path(__file__).resolve().parents[1]
    where = str(root) if (root / "package.json").is_file() else "the fedledger repository"
    return f"run `npm ci` in {where} (or set FEDLEDGER_NODE_MODULES to a node_modules that has it)"
