"""`pip install .` lays out one import package `fedledger` with its data files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_non_editable_install_has_only_the_fedledger_package(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    top_level = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert top_level == ["fedledger"]
    package = target / "fedledger"
    for part in (
        "contracts",
        "server",
        "server/gateway",
        "server/gateway/proto",
        "server/coordinator",
        "client",
        "aggregation",
        "simulation",
        "deploy",
        "audit",
    ):
        assert (package / part / "__init__.py").is_file(), part
    assert (package / "contracts" / "build" / "FLTask.json").is_file()
    assert (package / "contracts" / "solidity" / "FLTask.sol").is_file()
    assert (package / "server" / "gateway" / "proto" / "gateway.proto").is_file()
    probe = (
        "import fedledger.contracts.artifacts as a, fedledger.deploy.deployer as d;"
        "print(a.load_artifact('FLTask').contract_name, a.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    name, location = result.stdout.split()
    assert name == "FLTask" and location.startswith(str(target))


@pytest.mark.slow
def test_the_wheel_builds_without_warnings_and_installs_its_artifacts_in_a_fresh_venv(tmp_path: Path) -> None:
    """The Solidity sources and compiled artifacts are declared package data: no setuptools warning."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    (wheel,) = tmp_path.glob("fedledger-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (site,) = venv.glob("lib/python*/site-packages")
    contracts = site / "fedledger" / "contracts"
    shipped = {p.relative_to(contracts).as_posix() for p in contracts.rglob("*") if p.suffix in (".json", ".sol")}
    sources = {
        p.relative_to(ROOT / "contracts").as_posix() for p in (ROOT / "contracts").rglob("*") if p.suffix == ".sol"
    }
    artifacts = {p.relative_to(ROOT / "contracts").as_posix() for p in (ROOT / "contracts" / "build").glob("*.json")}
    assert shipped == sources | artifacts
    assert "build/FLTask.json" in shipped and "solidity/libraries/Settlement.sol" in shipped
