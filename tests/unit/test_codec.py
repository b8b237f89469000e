"""The canonical model encoding: byte-exact, order-preserving, strict on bad input."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from fedledger import codec


def test_round_trip_keeps_names_order_dtypes_and_bytes() -> None:
    arrays = OrderedDict(
        [
            ("layer.weight", np.arange(6, dtype=np.float32).reshape(2, 3)),
            ("layer.bias", np.array([1, -2], dtype=">i8")),  # big-endian input is normalised
            ("mask", np.array([True, False])),
            ("empty", np.zeros((0, 4), dtype=np.float64)),
            ("scalar", np.array(3.5, dtype=np.float16)),
        ]
    )
    data = codec.encode(arrays)
    decoded = codec.decode(data)
    assert list(decoded) == list(arrays)
    for name, value in arrays.items():
        assert decoded[name].shape == value.shape and np.array_equal(decoded[name], value)
    assert decoded["layer.bias"].dtype == np.dtype("<i8")
    assert codec.encode(decoded) == data
    assert data[:4] == b"FLDG"


def test_the_layout_is_fixed() -> None:
    data = codec.encode(OrderedDict([("w", np.array([1.0], dtype=np.float32))]))
    # magic, version 1, one array; name "w"; dtype f4 (1), ndim 1, dim 1; 1.0 as little-endian f4
    header = b"FLDG" + b"\x01" + b"\x01\x00\x00\x00"
    array = b"\x01\x00w" + b"\x01\x01" + b"\x01\x00\x00\x00" + b"\x00\x00\x80\x3f"
    assert data == header + array


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"XXXX\x01\x00\x00\x00\x00", "bad magic"),
        (b"FLDG\x02\x00\x00\x00\x00", "version 2"),
        (codec.encode({"w": np.ones(4, np.float32)})[:-3], "truncated"),
        (codec.encode({"w": np.ones(4, np.float32)}) + b"\x00", "trailing"),
        (b"FLDG\x01\x01\x00\x00\x00\x01\x00w\x63\x00", "unknown dtype"),
    ],
)
def test_malformed_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(data)


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(codec.CodecError, match="not supported"):
        codec.encode({"c": np.array([1 + 2j])})


@given(arrays(dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8]), shape=array_shapes(max_dims=3)))
def test_any_array_round_trips(array: np.ndarray) -> None:
    decoded = codec.decode(codec.encode({"x": array}))["x"]
    assert decoded.shape == array.shape
    assert np.array_equal(decoded, array, equal_nan=array.dtype.kind == "f")
