"""Content-addressed blob store: updates and models, keyed by keccak256 of their bytes.

Writes stream into a temporary file in the store's own directory, hashing as they go, and are
renamed into place only when complete and matching the expected hash, so a blob is either
whole and correct or absent. Reads verify the hash again before handing anything out.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from Crypto.Hash import keccak

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


class BlobError(Exception):
    """Base class of blob store errors."""


class BlobTooLarge(BlobError):
    """The blob exceeds the store's size limit."""


class BlobHashMismatch(BlobError):
    """The bytes do not hash to the expected keccak256."""


class BlobTruncated(BlobError):
    """Fewer bytes arrived than announced."""


class BlobNotFound(BlobError):
    """No blob with that hash is stored."""


class BlobCorrupted(BlobError):
    """A stored blob no longer hashes to its name (tampered with, or damaged on disk)."""


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob."""

    hash: bytes
    size: int


def keccak256(data: bytes) -> bytes:
    """keccak256 of ``data``."""
    return keccak.new(data=data, digest_bits=256).digest()


class BlobStore(Protocol):
    """What the gateway needs from a blob store (local directory today; S3/IPFS later)."""

    max_bytes: int

    def put(self, chunks: Iterable[bytes], *, expected_hash: bytes | None = None, size: int | None = None) -> BlobInfo:
        """Store a streamed blob, checking size limit, announced size and expected hash."""
        ...

    def has(self, blob_hash: bytes) -> bool:
        """True when a blob with this hash is stored."""
        ...

    def size(self, blob_hash: bytes) -> int:
        """Size in bytes of a stored blob."""
        ...

    def read(self, blob_hash: bytes) -> Iterator[bytes]:
        """Stream a stored blob after verifying its hash."""
        ...


class LocalBlobStore:
    """Blobs as files ``<root>/<first 2 hex>/<hash hex>`` on a local disk."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Use (and create) ``root``; refuse blobs above ``max_bytes``."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def path(self, blob_hash: bytes) -> Path:
        """Where the blob with ``blob_hash`` lives."""
        if len(blob_hash) != 32:
            raise ValueError(f"a blob hash has 32 bytes, got {len(blob_hash)}")
        name = blob_hash.hex()
        return self.root / name[:2] / name

    def put(self, chunks: Iterable[bytes], *, expected_hash: bytes | None = None, size: int | None = None) -> BlobInfo:
        """Store a streamed blob.

        Raises:
            BlobTooLarge: more than ``max_bytes`` (or the announced ``size``) arrived or was announced.
            BlobTruncated: fewer bytes than the announced ``size`` arrived.
            BlobHashMismatch: the bytes do not hash to ``expected_hash``.
        """
        if size is not None and size > self.max_bytes:
            raise BlobTooLarge(f"blob of {size} bytes exceeds the limit of {self.max_bytes}")
        hasher = keccak.new(digest_bits=256)
        received = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    received += len(chunk)
                    limit = self.max_bytes if size is None else min(size, self.max_bytes)
                    if received > limit:
                        raise BlobTooLarge(f"blob exceeds {limit} bytes")
                    hasher.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            if size is not None and received < size:
                raise BlobTruncated(f"received {received} of {size} announced bytes")
            digest = hasher.digest()
            if expected_hash is not None and digest != expected_hash:
                raise BlobHashMismatch(f"bytes hash to 0x{digest.hex()}, not 0x{expected_hash.hex()}")
            final = self.path(digest)
            final.parent.mkdir(exist_ok=True)
            tmp.replace(final)  # atomic: a reader sees the whole blob or none
            return BlobInfo(digest, received)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> BlobInfo:
        """Store ``data`` in one piece."""
        return self.put([data], size=len(data))

    def has(self, blob_hash: bytes) -> bool:
        """True when a blob with this hash is stored."""
        return self.path(blob_hash).is_file()

    def size(self, blob_hash: bytes) -> int:
        """Size in bytes of a stored blob."""
        path = self.path(blob_hash)
        if not path.is_file():
            raise BlobNotFound(f"no blob 0x{blob_hash.hex()}")
        return path.stat().st_size

    def verify(self, blob_hash: bytes) -> int:
        """Re-hash a stored blob; return its size.

        Raises:
            BlobNotFound: it is not stored.
            BlobCorrupted: its bytes no longer hash to its name.
        """
        path = self.path(blob_hash)
        hasher = keccak.new(digest_bits=256)
        size = 0
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    hasher.update(chunk)
                    size += len(chunk)
        except FileNotFoundError as exc:
            raise BlobNotFound(f"no blob 0x{blob_hash.hex()}") from exc
        if hasher.digest() != blob_hash:
            raise BlobCorrupted(f"stored blob 0x{blob_hash.hex()} hashes to 0x{hasher.hexdigest()}")
        return size

    def read(self, blob_hash: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Stream a stored blob in chunks, after verifying its hash (see :meth:`verify`)."""
        self.verify(blob_hash)
        path = self.path(blob_hash)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as handle:
                while chunk := handle.read(chunk_bytes):
                    yield chunk

        return chunks()

    def read_bytes(self, blob_hash: bytes) -> bytes:
        """A whole stored blob, verified."""
        return b"".join(self.read(blob_hash))
