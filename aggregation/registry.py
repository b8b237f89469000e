"""Strategies by name, from the entry-point group ``fedledger.strategies``.

A third party adds a strategy by declaring, in its own package::

    [project.entry-points."fedledger.strategies"]
    mystrategy = "mypackage.module:plugin"

where ``plugin`` is a :class:`~fedledger.aggregation.base.FedledgerStrategy` instance (or class).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from .base import FedledgerStrategy

GROUP = "fedledger.strategies"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def strategy_names() -> list[str]:
    """Names of every registered strategy."""
    return sorted(_entry_points())


def parse_options(spec: str) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` (as ``--strategy-option`` and the run config carry them) as a dict."""
    options: dict[str, str] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"a strategy option is KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def get_strategy(name: str, options: str = "") -> FedledgerStrategy:
    """The strategy plug-in called ``name``, with hyper-parameters from ``options`` (``KEY=VALUE,...``).

    Raises:
        ValueError: no strategy of that name is registered, it is not a FedledgerStrategy, or
            it does not take the options.
    """
    entry = _entry_points().get(name)
    if entry is None:
        known = ", ".join(strategy_names()) or "none (is fedledger installed?)"
        raise ValueError(f"unknown strategy {name!r}; registered: {known}")
    loaded = entry.load()
    plugin = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(plugin, FedledgerStrategy):
        raise ValueError(f"entry point {entry.value} is not a FedledgerStrategy")
    return plugin.with_options(parse_options(options))


def entry_point_value(name: str) -> str:
    """Where the strategy is defined (``module:attribute``)."""
    return _entry_points()[name].value
