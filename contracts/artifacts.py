"""Load the committed compiler artifacts (``contracts/build/*.json``)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from eth_utils import keccak
from pydantic import BaseModel, ConfigDict

BUILD_DIR = Path(__file__).parent / "build"


class Artifact(BaseModel):
    """ABI, bytecode and metadata of one compiled contract."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    contract_name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    link_references: dict[str, dict[str, list[dict[str, int]]]] = {}
    """Where the creation bytecode names a library: source -> library -> [{start, length}] (bytes)."""

    def bytecode_hash(self, libraries: dict[str, str] | None = None) -> str:
        """keccak256 of the creation bytecode, linked with ``libraries`` when it names any (for manifests)."""
        return "0x" + keccak(hexstr=self.linked_bytecode(libraries or {})).hex()

    @property
    def libraries(self) -> list[str]:
        """Names of the libraries the bytecode must be linked with."""
        return sorted({name for refs in self.link_references.values() for name in refs})

    def linked_bytecode(self, libraries: dict[str, str]) -> str:
        """The creation bytecode with each library placeholder replaced by its deployed address.

        Raises:
            ValueError: a library the bytecode needs is missing from ``libraries``.
        """
        code = self.bytecode.removeprefix("0x")
        for refs in self.link_references.values():
            for name, places in refs.items():
                if name not in libraries:
                    raise ValueError(f"{self.contract_name} needs library {name}; deploy it first")
                address = libraries[name].removeprefix("0x").lower()
                for place in places:
                    start = 2 * place["start"]
                    code = code[:start] + address + code[start + 2 * place["length"] :]
        return "0x" + code


@functools.cache
def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> Artifact:
    """Return the artifact of contract ``name`` (e.g. ``"FLTask"``).

    Raises:
        FileNotFoundError: no artifact of that name; run ``fedledger contracts compile``.
    """
    path = build_dir / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no artifact {path}; run `fedledger contracts compile`")
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Artifact(
        contract_name=raw["contractName"],
        source_name=raw["sourceName"],
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        link_references=raw.get("linkReferences", {}),
    )


def canonical_type(param: dict[str, Any]) -> str:
    """The canonical ABI type of a parameter, with tuples spelled out (``(uint256,bytes)[]``)."""
    if param["type"].startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def signature(item: dict[str, Any]) -> str:
    """``Name(type,...)`` of an ABI error, event or function entry."""
    return f"{item['name']}({','.join(canonical_type(i) for i in item['inputs'])})"


def all_artifacts(build_dir: Path = BUILD_DIR) -> dict[str, Artifact]:
    """Every artifact in ``build_dir``, keyed by contract name."""
    return {p.stem: load_artifact(p.stem, build_dir) for p in sorted(build_dir.glob("*.json"))}
