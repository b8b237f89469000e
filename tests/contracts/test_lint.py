"""`fedledger contracts lint`: Slither over the contracts, failing on High and Medium findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedledger.contracts.lint import lint

from ..conftest import fedledger

VULNERABLE = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

contract Vault {
    mapping(address => uint256) public balances;

    function deposit() external payable {
        balances[msg.sender] += msg.value;
    }

    function withdraw() external {
        uint256 amount = balances[msg.sender];
        (bool ok, ) = msg.sender.call{value: amount}("");
        require(ok, "transfer failed");
        balances[msg.sender] = 0;
    }
}
"""


@pytest.mark.slow
def test_the_projects_contracts_have_no_high_or_medium_finding(tmp_path: Path) -> None:
    report_file = tmp_path / "lint.json"
    result = fedledger("contracts", "lint", "--json", str(report_file), timeout=600)
    report = json.loads(report_file.read_text())
    failing = [f for f in report["findings"] if f["impact"] in ("High", "Medium")]
    assert result.returncode == 0 and failing == [], result.stdout
    assert {"FLTask", "FLTaskFactory", "Settlement", "Registry"} <= set(report["contracts"])
    assert "no High or Medium finding" in result.stdout


@pytest.mark.slow
def test_lint_catches_a_reentrancy_and_ignores_none_of_our_own_code() -> None:
    report = lint({"Vault.sol": {"content": VULNERABLE}})
    assert report.contracts == ["Vault"]
    assert [(f.impact, f.check) for f in report.failing if f.check.startswith("reentrancy")] == [
        ("High", "reentrancy-eth")
    ]
    assert report.failing[0].location.startswith("Vault.sol#L")
