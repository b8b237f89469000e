"""Bytes a gRPC client sends and receives, counted as serialized protobuf messages.

A client interceptor adds each request's and response's ``ByteSize()`` (streams message by
message). HTTP/2 framing and headers are not included: the figures are the payload on the wire.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass
class Bytes:
    """Counted bytes, out (requests) and in (responses)."""

    sent: int = 0
    received: int = 0


def _size(message: Any) -> int:
    return int(message.ByteSize()) if hasattr(message, "ByteSize") else 0


class ByteCounter(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Counts every message of the channel it intercepts (thread-safe)."""

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.total = Bytes()

    def snapshot(self) -> Bytes:
        """The counts so far (a copy)."""
        with self._lock:
            return Bytes(self.total.sent, self.total.received)

    def _add(self, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self.total.sent += sent
            self.total.received += received

    def _requests(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for message in iterator:
            self._add(sent=_size(message))
            yield message

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        """Count the request, then the response once it arrives."""
        self._add(sent=_size(request))
        call = continuation(details, request)
        with contextlib.suppress(grpc.RpcError):  # an error carries no response message
            self._add(received=_size(call.result()))
        return call

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        """Count the request and each streamed response."""
        self._add(sent=_size(request))
        return _Stream(continuation(details, request), self)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        """Count each streamed request and the response."""
        call = continuation(details, self._requests(requests))
        with contextlib.suppress(grpc.RpcError):
            self._add(received=_size(call.result()))
        return call

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        """Count both streams."""
        return _Stream(continuation(details, self._requests(requests)), self)


class _Stream:
    """A response stream that counts what it yields and otherwise behaves like the call."""

    def __init__(self, call: Any, counter: ByteCounter) -> None:
        self._call = call
        self._counter = counter

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        message = next(self._call)
        self._counter._add(received=_size(message))
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)
