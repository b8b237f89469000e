"""The committed artifacts are exactly what the pinned compiler makes of the sources."""

from __future__ import annotations

import json

import pytest

from fedledger.contracts import compiler
from fedledger.contracts.artifacts import BUILD_DIR, load_artifact

EIP170_LIMIT = 24_576


@pytest.mark.slow
def test_fresh_compile_matches_committed_artifacts_byte_for_byte() -> None:
    artifacts = compiler.compile_sources()
    committed = sorted(p.stem for p in BUILD_DIR.glob("*.json"))
    assert sorted(artifacts) == committed
    for name, artifact in artifacts.items():
        assert (BUILD_DIR / f"{name}.json").read_bytes() == compiler.render_artifact(artifact).encode(), name


def test_artifacts_record_the_pinned_compiler_and_settings() -> None:
    for path in BUILD_DIR.glob("*.json"):
        raw = json.loads(path.read_text())
        assert raw["compiler"]["version"] == compiler.SOLC_VERSION
        assert raw["compiler"]["settings"]["evmVersion"] == "cancun"
        metadata = json.loads(raw["metadata"])
        assert metadata["compiler"]["version"].startswith(compiler.SOLC_VERSION + "+commit")


def test_pinned_versions_agree_with_package_json() -> None:
    from pathlib import Path

    package = json.loads((Path(compiler.__file__).resolve().parents[1] / "package.json").read_text())
    assert package["dependencies"]["solc"] == compiler.SOLC_VERSION
    assert package["dependencies"]["@openzeppelin/contracts"].startswith("5.")


@pytest.mark.parametrize("name", ["FLTask", "Registry", "Settlement", "FLTaskFactory", "TaskCodeStore"])
def test_deployed_code_fits_eip170(name: str) -> None:
    assert (len(load_artifact(name).deployed_bytecode) - 2) // 2 < EIP170_LIMIT


def test_task_code_needs_its_libraries_and_fits_the_code_stores() -> None:
    from fedledger.deploy.deployer import CODE_PART_BYTES

    task = load_artifact("FLTask")
    assert task.libraries == ["Registry", "Settlement"]
    with pytest.raises(ValueError, match="needs library"):
        task.linked_bytecode({"Registry": "0x" + "11" * 20})
    linked = task.linked_bytecode({"Registry": "0x" + "11" * 20, "Settlement": "0x" + "22" * 20})
    assert "__$" not in linked and "1111111111111111111111111111111111111111" in linked
    # Each code store holds a STOP byte plus one part of the creation code as runtime code.
    assert 1 + CODE_PART_BYTES < EIP170_LIMIT


def test_sources_include_every_openzeppelin_import() -> None:
    sources = compiler.collect_sources()
    assert "@openzeppelin/contracts/utils/cryptography/EIP712.sol" in sources
    assert "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol" in sources
    assert "interfaces/IFLTask.sol" in sources and "libraries/Sortition.sol" in sources


def test_missing_import_is_a_clear_error(tmp_path: object) -> None:
    from pathlib import Path

    src = Path(str(tmp_path))
    (src / "A.sol").write_text('import {B} from "./B.sol";\n')
    with pytest.raises(compiler.CompileError, match=r"import not found: B\.sol"):
        compiler.collect_sources(["A.sol"], source_dir=src)
