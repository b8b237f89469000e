"""A live node's local dataset: a demo partition of a built-in task, or the user's own file.

``--data`` of ``fedledger node join`` takes one of

- ``TASK:INDEX/COUNT``: partition INDEX of COUNT of a built-in task (e.g. ``digits:0/3``),
  split with the run's partitioning and seed exactly as in a simulation (demo federations);
- ``PATH.npz``: a NumPy archive with ``x_train``, ``y_train``, ``x_val``, ``y_val`` and
  optionally ``x_test``, ``y_test`` (docs/live-federation.md); ``x`` arrays hold features of
  the task's shape and kind (float32 pixels for digits), ``y`` arrays integer labels in
  ``[0, num_classes)``. Built-in classification tasks only (not detdigits).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedledger.simulation.tasks import get_task
from fedledger.simulation.tasks.base import ClientData, Split, Task

_PARTITION = re.compile(r"^(?P<task>[a-z][a-z0-9_]*):(?P<index>\d+)/(?P<count>\d+)$")
REQUIRED_ARRAYS = ("x_train", "y_train", "x_val", "y_val")


class DataSpecError(ValueError):
    """A ``--data`` value that names no usable dataset."""


@dataclass(frozen=True)
class DataSpec:
    """Where a node's data comes from: a built-in partition or a file."""

    task: str | None = None
    index: int = -1
    count: int = 0
    path: Path | None = None

    @property
    def partition_id(self) -> int:
        """The partition index (-1 for a file): how the coordinator's records name this node's data."""
        return self.index

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"{self.task}:{self.index}/{self.count}"

    def load(self, task: Task, partitioning: str, seed: int) -> ClientData:
        """The node's train / validation (/ test) splits for ``task``.

        Raises:
            DataSpecError: the partition is of another task or out of range, or the file is
                missing, unreadable, or does not fit the task.
        """
        if self.path is None:
            if self.task != task.name:
                raise DataSpecError(f"--data names task {self.task!r} but this federation trains {task.name!r}")
            try:
                return task.client_data(self.index, self.count, partitioning, seed)
            except ValueError as exc:
                raise DataSpecError(str(exc)) from exc
        return _load_npz(self.path, task, seed)


def parse_data_spec(text: str) -> DataSpec:
    """Parse ``TASK:INDEX/COUNT`` or the path of an ``.npz`` file.

    Raises:
        DataSpecError: neither form, an unknown task, an index out of range, or a missing file.
    """
    match = _PARTITION.match(text.strip())
    if match:
        index, count = int(match["index"]), int(match["count"])
        try:
            get_task(match["task"])
        except ValueError as exc:
            raise DataSpecError(str(exc)) from exc
        if count < 1 or not 0 <= index < count:
            raise DataSpecError(f"partition {index}/{count}: INDEX must be in 0..COUNT-1")
        return DataSpec(task=match["task"], index=index, count=count)
    path = Path(text).expanduser()
    if path.suffix != ".npz":
        raise DataSpecError(f"--data takes TASK:INDEX/COUNT (e.g. digits:0/3) or a .npz file, got {text!r}")
    if not path.is_file():
        raise DataSpecError(f"data file not found: {path}")
    return DataSpec(path=path.resolve())


def _load_npz(path: Path, task: Task, seed: int) -> ClientData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataSpecError(f"cannot read {path} as a NumPy .npz archive: {exc}") from exc
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise DataSpecError(f"{path} lacks the arrays {', '.join(missing)} (needs {', '.join(REQUIRED_ARRAYS)})")
    sample = task.test_data(seed)
    if type(sample) is not Split:
        raise DataSpecError(f"task {task.name} takes no data files yet: use a TASK:INDEX/COUNT partition")
    splits = {}
    for name in ("train", "val", "test"):
        if f"x_{name}" not in arrays and name == "test":
            continue
        splits[name] = _split(path, name, arrays.get(f"x_{name}"), arrays.get(f"y_{name}"), sample, task.num_classes)
    if len(splits["train"]) == 0 or len(splits["val"]) == 0:
        raise DataSpecError(f"{path}: the train and val splits must not be empty")
    return ClientData(splits["train"], splits["val"], splits.get("test"))


def _split(path: Path, name: str, x: np.ndarray | None, y: np.ndarray | None, like: Split, classes: int) -> Split:
    """Arrays checked against the task's own data ``like``: same feature shape and kind, labels in range."""
    if x is None or y is None:
        raise DataSpecError(f"{path}: x_{name} and y_{name} come in pairs")
    if x.shape[1:] != like.x.shape[1:] or x.dtype.kind != like.x.dtype.kind:
        raise DataSpecError(
            f"{path}: x_{name} must be {like.x.dtype} shaped (N, {', '.join(map(str, like.x.shape[1:]))}), "
            f"got {x.dtype} {x.shape}"
        )
    if y.shape[1:] != like.y.shape[1:] or len(y) != len(x) or y.dtype.kind not in "iu":
        raise DataSpecError(
            f"{path}: y_{name} must be {len(x)} integer labels like the task's, got {y.dtype} {y.shape}"
        )
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise DataSpecError(f"{path}: y_{name} labels must lie in 0..{classes - 1}")
    return Split(x.astype(like.x.dtype), y.astype(like.y.dtype))
