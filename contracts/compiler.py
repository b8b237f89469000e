"""Compile the Solidity sources into the committed artifacts under ``contracts/build``.

The compiler runs through py-solc-x's standard-JSON interface. A native ``solc`` of the pinned
version is used when one is found; otherwise the npm package ``solc`` (solcjs, pinned in
package.json) is driven through a small executable wrapper that makes it look like native solc
(see :mod:`fedledger.contracts.solcjs`). Every imported source, OpenZeppelin's included, is put
into the standard-JSON ``sources`` so that no import callback or ``--allow-paths`` is needed.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import solcx
from solcx.exceptions import SolcError

from .solcjs import find_node_modules, make_solcjs_wrapper

SOLC_VERSION = "0.8.30"
"""The one compiler version the artifacts are built with (also pinned in package.json)."""

SOURCE_DIR = Path(__file__).parent / "solidity"
BUILD_DIR = Path(__file__).parent / "build"

ENTRY_POINTS: tuple[str, ...] = (
    "FLTask.sol",
    "FLTaskFactory.sol",
    "libraries/Registry.sol",
    "libraries/Settlement.sol",
    "TaskCodeStore.sol",
    "test/ReentrantReceiver.sol",
)
"""Source units whose contracts get an artifact (their imports are compiled along)."""

COMPILER_SETTINGS: dict[str, Any] = {
    # OpenZeppelin 5 uses mcopy, so the EVM must be at least cancun.
    "evmVersion": "cancun",
    # Through the IR pipeline FLTask's creation code fits the 24,576-byte code store (legacy: 25.9 KB).
    "viaIR": True,
    "optimizer": {"enabled": True, "runs": 200},
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {
        "*": {
            "*": [
                "abi",
                "metadata",
                "evm.bytecode.object",
                "evm.bytecode.linkReferences",
                "evm.deployedBytecode.object",
                "devdoc",
                "userdoc",
            ]
        }
    },
}

_IMPORT_RE = re.compile(r'^\s*import\s+(?:[^"\']*?\s+from\s+)?["\']([^"\']+)["\']\s*;', re.MULTILINE)
_OZ_PREFIX = "@openzeppelin/contracts/"


class CompileError(RuntimeError):
    """The sources could not be compiled (missing compiler, missing import or a Solidity error)."""


def collect_sources(
    entry_points: Iterable[str] = ENTRY_POINTS,
    source_dir: Path = SOURCE_DIR,
    node_modules: Path | None = None,
) -> dict[str, dict[str, str]]:
    """Return the standard-JSON ``sources`` of the entry points and everything they import.

    Source unit names are paths relative to ``source_dir``; OpenZeppelin files keep their
    ``@openzeppelin/contracts/...`` import names and are read from ``node_modules``.
    """
    modules = node_modules or find_node_modules()
    sources: dict[str, dict[str, str]] = {}
    pending = list(entry_points)
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        path = _locate(name, source_dir, modules)
        text = path.read_text(encoding="utf-8")
        sources[name] = {"content": text}
        for target in _IMPORT_RE.findall(text):
            if target.startswith("@"):
                pending.append(target)
            else:
                pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
    return dict(sorted(sources.items()))


def _locate(name: str, source_dir: Path, node_modules: Path | None) -> Path:
    if name.startswith(_OZ_PREFIX):
        if node_modules is None:
            raise CompileError(f"cannot resolve {name}: no node_modules found; run `npm ci` in the repository")
        path = node_modules / "@openzeppelin" / "contracts" / name[len(_OZ_PREFIX) :]
    else:
        path = source_dir / name
    if not path.is_file():
        raise CompileError(f"import not found: {name} (looked at {path})")
    return path


def _native_version(candidate: Path) -> str | None:
    """The version a ``solc`` executable reports, or None when it does not answer like solc.

    A foreign ``solc`` is skipped quietly: e.g. solc-select's shim (installed with Slither), which
    without an installed compiler tries to download a version list and prints a traceback.
    """
    try:
        done = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"Version: (\d+\.\d+\.\d+)", done.stdout)
    return found.group(1) if done.returncode == 0 and found else None


def find_compiler(node_modules: Path | None = None) -> Path:
    """Return a solc-compatible executable of :data:`SOLC_VERSION`.

    Order: a native ``solc`` on PATH or installed by py-solc-x with exactly that version, else
    the npm solcjs behind a generated wrapper.
    """
    candidates: list[Path] = []
    native = shutil.which("solc")
    if native:
        candidates.append(Path(native))
    with contextlib.suppress(Exception):  # py-solc-x raises several types when nothing is installed
        candidates.append(Path(solcx.get_executable(SOLC_VERSION)))
    for candidate in candidates:
        if _native_version(candidate) == SOLC_VERSION:
            return candidate
    modules = node_modules or find_node_modules()
    if modules is None:
        raise CompileError(f"no solc {SOLC_VERSION} found: install the pinned solcjs with `npm ci` in the repository")
    return make_solcjs_wrapper(modules, SOLC_VERSION)


def compile_sources(node_modules: Path | None = None) -> dict[str, dict[str, Any]]:
    """Compile all entry points and return one artifact per contract, keyed by contract name."""
    modules = node_modules or find_node_modules()
    sources = collect_sources(node_modules=modules)
    compiler = find_compiler(modules)
    try:
        output = solcx.compile_standard(
            {"language": "Solidity", "sources": sources, "settings": COMPILER_SETTINGS},
            solc_binary=compiler,
        )
    except SolcError as exc:
        raise CompileError(str(exc)) from exc
    wanted = set(ENTRY_POINTS)
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in output["contracts"].items():
        if source_name not in wanted:
            continue
        for contract_name, out in contracts.items():
            artifacts[contract_name] = {
                "contractName": contract_name,
                "sourceName": source_name,
                "compiler": {"version": SOLC_VERSION, "settings": _artifact_settings()},
                "abi": out["abi"],
                "bytecode": "0x" + out["evm"]["bytecode"]["object"],
                "linkReferences": out["evm"]["bytecode"].get("linkReferences", {}),
                "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
                "metadata": out["metadata"],
                "devdoc": out.get("devdoc", {}),
                "userdoc": out.get("userdoc", {}),
            }
    return artifacts


def _artifact_settings() -> dict[str, Any]:
    return {k: v for k, v in COMPILER_SETTINGS.items() if k != "outputSelection"}


def render_artifact(artifact: dict[str, Any]) -> str:
    """Serialise an artifact deterministically (the committed files are compared byte for byte)."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict[str, Any]], out_dir: Path = BUILD_DIR) -> list[Path]:
    """Write ``<Contract>.json`` files atomically into ``out_dir`` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = out_dir / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(render_artifact(artifact), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
