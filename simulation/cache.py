"""The local cache of derived artefacts (pretrained weights, tuned classifiers): built once, shared by processes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from fedledger.numerics import paths_tag


def cache_dir() -> Path:
    """``$FEDLEDGER_CACHE`` or ``~/.cache/fedledger``, in a folder per torch version and CPU code paths.

    Weights trained under another torch or on other kernels differ in their last bits, and so
    would every run that starts from them (fedledger.numerics): they are other artefacts.
    """
    root = Path(os.environ.get("FEDLEDGER_CACHE") or Path.home() / ".cache" / "fedledger")
    return root / f"torch{version('torch')}-{paths_tag()}"


def build_once(path: Path, build: Callable[[Path], None]) -> bool:
    """Make ``path`` with ``build(tmp)`` unless it exists; return whether this call built it.

    Concurrent processes wait on a lock file for the first one; the result appears atomically
    (written to a temporary name, then renamed), so a reader never sees half a file.
    """
    if path.is_file():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():
            return False
        tmp = path.with_name(path.name + ".tmp")
        build(tmp)
        tmp.replace(path)
        return True
