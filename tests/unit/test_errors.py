"""ContractRevert decoding from eth-tester messages and from web3 exceptions of real nodes."""

from __future__ import annotations

from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector as selector
from eth_utils import to_checksum_address
from web3.exceptions import ContractCustomError, ContractLogicError

from fedledger.contracts.errors import as_contract_revert, decode_revert

WRONG_PHASE = selector("WrongPhase(uint8,uint8)") + encode(["uint8", "uint8"], [2, 1])


def test_decodes_custom_error_with_arguments() -> None:
    revert = decode_revert(WRONG_PHASE)
    assert revert.error == "WrongPhase" and revert.params == {"expected": 2, "actual": 1}
    assert revert.describe() == "WrongPhase(expected=2, actual=1)"


def test_decodes_library_errors_error_string_and_panic() -> None:
    nonce = decode_revert(
        selector("InvalidAccountNonce(address,uint256)") + encode(["address", "uint256"], ["0x" + "ab" * 20, 3])
    )
    assert nonce.error == "InvalidAccountNonce" and nonce.params["currentNonce"] == 3
    assert nonce.params["account"] == to_checksum_address("0x" + "ab" * 20)
    assert decode_revert(selector("Error(string)") + encode(["string"], ["boom"])).params == {"message": "boom"}
    assert decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11])).params == {"code": 0x11}


def test_unknown_or_empty_data_has_no_name() -> None:
    assert decode_revert(b"").error is None
    assert decode_revert(b"\xde\xad\xbe\xef").error is None
    assert decode_revert(selector("WrongPhase(uint8,uint8)") + b"\x01").error is None  # truncated


def test_translates_eth_tester_and_web3_exceptions() -> None:
    tester = TransactionFailed(f"execution reverted: {WRONG_PHASE!r}")
    assert as_contract_revert(tester).error == "WrongPhase"  # type: ignore[union-attr]
    assert as_contract_revert(TransactionFailed("plain reason")).params == {"message": "plain reason"}  # type: ignore[union-attr]
    custom = ContractCustomError("0x" + WRONG_PHASE.hex(), data="0x" + WRONG_PHASE.hex())
    assert as_contract_revert(custom).error == "WrongPhase"  # type: ignore[union-attr]
    logic = ContractLogicError("execution reverted: nope", data=None)
    assert as_contract_revert(logic).params == {"message": "nope"}  # type: ignore[union-attr]
    assert as_contract_revert(ValueError("x")) is None
