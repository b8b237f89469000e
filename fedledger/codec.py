"""Canonical bytes of a model or an update, so that everyone hashes the same thing.

An update's on-chain commitment is keccak256 of these bytes; the gateway stores and serves
them; anyone can decode and re-hash them. The encoding is fixed and byte-exact:

    b"FLDG" | version u8 (=1) | count u32
    per array, in order:  name_len u16 | name utf-8 | dtype u8 | ndim u8 | dims u32 * ndim | data

all integers little-endian, data in C order and little-endian. Arrays keep their given order
(a model's ``state_dict`` order), so encode(decode(b)) == b.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

MAGIC = b"FLDG"
VERSION = 1

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<f2"),
    4: np.dtype("<i8"),
    5: np.dtype("<i4"),
    6: np.dtype("<i2"),
    7: np.dtype("i1"),
    8: np.dtype("u1"),
    9: np.dtype("?"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


class CodecError(ValueError):
    """Bytes that are not a valid canonical encoding, or an array that cannot be encoded."""


def encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Canonical bytes of named arrays (order preserved)."""
    parts = [MAGIC, struct.pack("<BI", VERSION, len(arrays))]
    for name, value in arrays.items():
        array = np.asarray(value)
        code = _CODES.get(array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype)
        if code is None:
            raise CodecError(f"array {name!r}: dtype {array.dtype} is not supported")
        if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
            raise CodecError(f"array {name!r}: shape {array.shape} is too large")
        raw_name = name.encode("utf-8")
        if len(raw_name) >= 2**16:
            raise CodecError(f"array name too long: {name[:40]}...")
        parts.append(struct.pack("<H", len(raw_name)) + raw_name)
        parts.append(struct.pack(f"<BB{array.ndim}I", code, array.ndim, *array.shape))
        parts.append(np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes(order="C"))
    return b"".join(parts)


def decode(data: bytes) -> OrderedDict[str, np.ndarray]:
    """Named arrays from canonical bytes.

    Raises:
        CodecError: the bytes are not a complete, valid encoding (nothing may trail it).
    """
    view = memoryview(data)
    if bytes(view[:4]) != MAGIC or len(view) < 9:
        raise CodecError("not a fedledger model encoding (bad magic)")
    version, count = struct.unpack_from("<BI", view, 4)
    if version != VERSION:
        raise CodecError(f"unsupported encoding version {version}")
    offset = 9
    arrays: OrderedDict[str, np.ndarray] = OrderedDict()
    try:
        for _ in range(count):
            (name_len,) = struct.unpack_from("<H", view, offset)
            offset += 2
            name = bytes(view[offset : offset + name_len]).decode("utf-8")
            offset += name_len
            code, ndim = struct.unpack_from("<BB", view, offset)
            offset += 2
            shape = struct.unpack_from(f"<{ndim}I", view, offset)
            offset += 4 * ndim
            dtype = _DTYPES.get(code)
            if dtype is None:
                raise CodecError(f"array {name!r}: unknown dtype code {code}")
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if offset + size > len(view):
                raise CodecError(f"array {name!r}: truncated data")
            if name in arrays:
                raise CodecError(f"array {name!r} appears twice")
            arrays[name] = np.frombuffer(view[offset : offset + size], dtype=dtype).reshape(shape).copy()
            offset += size
    except (struct.error, UnicodeDecodeError) as exc:
        raise CodecError(f"truncated or malformed encoding: {exc}") from exc
    if offset != len(view):
        raise CodecError(f"{len(view) - offset} trailing bytes after the last array")
    return arrays
