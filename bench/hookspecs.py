"""The four hooks a plugin may implement: explainers, datasets, metrics, classifiers.

Each hook hands the plugin a ``register`` callback instead of asking it to return
objects, as ``llm`` and ``datasette`` do: a plugin can register any number of classes,
and the host keeps control of validation (duplicate names, missing attributes) in one
place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "l2i_bench"
"""Hook namespace and entry-point group; a third-party package declares
``[project.entry-points.l2i_bench] my_plugin = "my_package.my_module"``."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_explainers(register: Callable[[type[Any]], None]) -> None:
    """Register explainer classes (subclasses of :class:`l2i_bench.types.Explainer`)."""


@hookspec
def register_datasets(register: Callable[[type[Any]], None]) -> None:
    """Register dataset classes (subclasses of :class:`l2i_bench.types.Dataset`)."""


@hookspec
def register_metrics(register: Callable[[type[Any]], None]) -> None:
    """Register metric classes (subclasses of :class:`l2i_bench.types.Metric`)."""


@hookspec
def register_classifiers(register: Callable[[type[Any]], None]) -> None:
    """Register classifier classes (subclasses of :class:`l2i_bench.types.Classifier`)."""
