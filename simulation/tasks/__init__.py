"""Tasks that run offline on a CPU in seconds; look one up with :func:`get_task`."""

from __future__ import annotations

from collections.abc import Callable

from .base import ClientData, Split, Task, TrainSettings, load_arrays, model_arrays
from .charlm import CharCodeTask, CharLMTask
from .detdigits import DetDigitsTask
from .digits import DigitsTask
from .ltdigits import LongTailDigitsTask
from .mnist import MnistTask

_TASKS: dict[str, Callable[[], Task]] = {
    "digits": DigitsTask,
    "charlm": CharLMTask,
    "charcode": CharCodeTask,
    "ltdigits": LongTailDigitsTask,
    "detdigits": DetDigitsTask,
    "mnist": MnistTask,
}


def get_task(name: str) -> Task:
    """The task called ``name``."""
    try:
        return _TASKS[name]()
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(_TASKS))}") from None


def task_names() -> list[str]:
    """Names of the known tasks."""
    return sorted(_TASKS)


__all__ = ["ClientData", "Split", "Task", "TrainSettings", "get_task", "load_arrays", "model_arrays", "task_names"]
