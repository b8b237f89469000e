"""One exception for contract reverts, on eth-tester and on real JSON-RPC nodes alike.

eth-tester raises ``TransactionFailed`` whose message embeds the revert data as a Python bytes
literal; real nodes make web3 raise ``ContractCustomError`` / ``ContractLogicError`` (or
``ContractPanicError``) carrying the data as hex. :func:`as_contract_revert` turns any of them
into a :class:`ContractRevert` with the custom error decoded against the contracts' ABIs.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3.exceptions import ContractCustomError, ContractLogicError

from .artifacts import all_artifacts, canonical_type, signature

_ERROR_STRING = function_signature_to_4byte_selector("Error(string)")
_PANIC = function_signature_to_4byte_selector("Panic(uint256)")


class ContractRevert(Exception):
    """A contract call or transaction reverted.

    Attributes:
        error: name of the custom error (``"WrongPhase"``), ``"Error"`` for a reason string,
            ``"Panic"`` for a panic code, or ``None`` when the revert carried no data.
        args: the error's decoded arguments by parameter name.
        data: the raw revert data.
    """

    def __init__(self, error: str | None, args: dict[str, Any] | None = None, data: bytes = b"") -> None:
        self.error = error
        self.params: dict[str, Any] = dict(args or {})
        self.data = data
        super().__init__(self.describe())

    def describe(self) -> str:
        """One human-readable line, e.g. ``WrongPhase(expected=2, actual=1)``."""
        if self.error is None:
            return "reverted without a reason" if not self.data else f"reverted with data 0x{self.data.hex()}"
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.params.items())
        return f"{self.error}({inner})"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


@functools.cache
def _error_table() -> dict[bytes, tuple[str, list[str], list[str]]]:
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    for artifact in all_artifacts().values():
        for item in artifact.abi:
            if item.get("type") != "error":
                continue
            types = [canonical_type(i) for i in item["inputs"]]
            selector = function_signature_to_4byte_selector(signature(item))
            table[selector] = (item["name"], [i["name"] for i in item["inputs"]], types)
    return table


def decode_revert(data: bytes) -> ContractRevert:
    """Decode raw revert data into a :class:`ContractRevert`."""
    selector, body = data[:4], data[4:]
    try:
        if selector == _ERROR_STRING:
            return ContractRevert("Error", {"message": decode(["string"], body)[0]}, data)
        if selector == _PANIC:
            return ContractRevert("Panic", {"code": decode(["uint256"], body)[0]}, data)
        entry = _error_table().get(selector)
        if entry is not None:
            name, names, types = entry
            values = [
                to_checksum_address(v) if t == "address" else v for t, v in zip(types, decode(types, body), strict=True)
            ]
            return ContractRevert(name, dict(zip(names, values, strict=True)), data)
    except DecodingError:
        pass
    return ContractRevert(None, None, data)


def as_contract_revert(exc: BaseException) -> ContractRevert | None:
    """Return the :class:`ContractRevert` an exception stands for, or ``None`` if it is no revert."""
    if isinstance(exc, ContractRevert):
        return exc
    if isinstance(exc, TransactionFailed):
        return _from_eth_tester(str(exc.args[0]) if exc.args else "")
    if isinstance(exc, ContractCustomError | ContractLogicError):
        data = exc.data
        if isinstance(data, str) and data.startswith("0x"):
            return decode_revert(bytes.fromhex(data[2:]))
        message = str(exc.message or "").removeprefix("execution reverted: ").removeprefix("execution reverted")
        return ContractRevert("Error", {"message": message}) if message else ContractRevert(None)
    return None


def _from_eth_tester(message: str) -> ContractRevert:
    # py-evm renders the revert as "execution reverted: b'...'" unless it was Error(string),
    # which eth-tester already decoded into the message itself.
    prefix = "execution reverted: "
    if message.startswith(prefix + "b'") or message.startswith(prefix + 'b"'):
        return decode_revert(ast.literal_eval(message[len(prefix) :]))
    if message in ("execution reverted", "execution reverted: b''"):
        return ContractRevert(None)
    return ContractRevert("Error", {"message": message})
