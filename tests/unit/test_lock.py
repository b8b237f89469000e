"""requirements.lock agrees with pyproject.toml, and the suite runs in the environment it locks."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def locked(text: str) -> dict[str, Version]:
    """The lock's ``name==version`` lines by canonical name."""
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            match = PIN.match(line.strip())
            assert match, f"requirements.lock: not a pin: {line!r}"
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def declared(pyproject: str) -> list[Requirement]:
    """pyproject's dependencies and its test extra (what the README commands install)."""
    project = tomllib.loads(pyproject)["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def disagreements(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    """Each requirement the lock leaves out or pins at a version it does not admit."""
    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not locked")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement} does not admit the locked {pins[name]}")
    return problems


def test_every_dependency_of_pyproject_is_locked_at_a_version_it_admits() -> None:
    problems = disagreements(declared((ROOT / "pyproject.toml").read_text()), locked(LOCK.read_text()))
    assert not problems, "pyproject.toml and requirements.lock disagree (run .ci/lock): " + "; ".join(problems)


def test_a_new_or_narrowed_dependency_is_a_disagreement() -> None:
    pins = {"numpy": Version("2.4.6"), "torch": Version("2.13.0")}
    assert disagreements([Requirement("numpy>=1.26"), Requirement("torch>=2.4,<2.14")], pins) == []
    assert disagreements([Requirement("numpy>=2.5")], pins) == ["numpy>=2.5 does not admit the locked 2.4.6"]
    assert disagreements([Requirement("rich>=13")], pins) == ["rich>=13 is not locked"]
    assert disagreements([Requirement('rich>=13; python_version < "3"')], pins) == []


def test_this_environment_runs_the_locked_versions() -> None:
    """What the suite measures depends on the versions (docs/decisions.md): it runs on the locked ones."""
    wrong = {}
    for name, version in locked(LOCK.read_text()).items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = f"not installed, locked {version}"
            continue
        if installed.public != version.public:  # torch 2.13.0+cpu is the locked 2.13.0
            wrong[name] = f"{installed} installed, locked {version}"
    assert not wrong, 'install with `pip install -c requirements.lock -e ".[test]"`: ' + str(wrong)
