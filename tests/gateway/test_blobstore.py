"""The content-addressed blob store: hashes checked on write and read, atomic, size-limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedledger.server.gateway.blobstore import (
    BlobCorrupted,
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    BlobTruncated,
    LocalBlobStore,
    keccak256,
)


def chunks(data: bytes, size: int = 7) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def leftovers(store: LocalBlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()]


def test_put_and_read_round_trip(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = bytes(range(256)) * 5
    info = store.put(chunks(data), expected_hash=keccak256(data), size=len(data))
    assert info.hash == keccak256(data) and info.size == len(data)
    assert store.has(info.hash) and store.size(info.hash) == len(data)
    assert b"".join(store.read(info.hash, chunk_bytes=100)) == data
    assert store.path(info.hash).parent.name == info.hash.hex()[:2]
    # Storing the same bytes again is idempotent.
    assert store.put_bytes(data) == info and len(leftovers(store)) == 1


def test_hash_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(BlobHashMismatch):
        store.put(chunks(b"hello world"), expected_hash=keccak256(b"other"))
    assert leftovers(store) == []


def test_size_limit_announced_and_streamed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, max_bytes=10)
    with pytest.raises(BlobTooLarge):
        store.put([b"x"], size=11)
    with pytest.raises(BlobTooLarge):
        store.put(chunks(b"x" * 11))
    with pytest.raises(BlobTooLarge):  # more bytes than announced
        store.put(chunks(b"x" * 6), size=5)
    assert leftovers(store) == []
    assert store.put_bytes(b"x" * 10).size == 10


def test_truncated_stream(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(BlobTruncated):
        store.put(chunks(b"abc"), size=10)
    assert leftovers(store) == []


def test_failure_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)

    def broken() -> object:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.put(broken())  # type: ignore[arg-type]
    assert leftovers(store) == []


def test_unknown_and_tampered_blobs(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(BlobNotFound):
        store.read(keccak256(b"never stored"))
    info = store.put_bytes(b"genuine update")
    store.path(info.hash).write_bytes(b"tampered update")
    with pytest.raises(BlobCorrupted):
        store.read(info.hash)
    with pytest.raises(ValueError, match="32 bytes"):
        store.has(b"short")


def test_a_new_store_on_the_same_folder_sees_the_blobs(tmp_path: Path) -> None:
    info = LocalBlobStore(tmp_path).put_bytes(b"persisted")
    assert LocalBlobStore(tmp_path).read_bytes(info.hash) == b"persisted"
