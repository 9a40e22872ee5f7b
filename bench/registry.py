"""Plugin discovery: entry points in, validated name -> class tables out.

Built-in plugins are declared in our own ``pyproject.toml`` under the same
``l2i_bench`` entry-point group a third-party package uses, so there is exactly one
registration path and every run exercises it. ``L2I_BENCH_LOAD_PLUGINS`` restricts
loading to a comma-separated list of entry-point or distribution names (an empty value
loads none), as ``LLM_LOAD_PLUGINS`` does for ``llm``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

import pluggy

from l2i_bench import hookspecs
from l2i_bench.errors import BenchError, did_you_mean
from l2i_bench.types import Classifier, Dataset, Explainer, Metric

LOAD_PLUGINS_ENV = "L2I_BENCH_LOAD_PLUGINS"

KINDS: dict[str, tuple[str, type]] = {
    "explainer": ("register_explainers", Explainer),
    "dataset": ("register_datasets", Dataset),
    "metric": ("register_metrics", Metric),
    "classifier": ("register_classifiers", Classifier),
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin module came from: entry point name and its distribution."""

    name: str
    module: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Registered:
    """One registered class with the plugin that registered it."""

    kind: str
    name: str
    cls: type
    plugin: PluginInfo

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.kind == "classifier":
            extra = {
                "taps": list(getattr(self.cls, "tap_names", ())),
                "late_taps": list(getattr(self.cls, "late_taps", ())),
                "trainable": bool(getattr(self.cls, "trainable", True)),
                "reference": str(getattr(self.cls, "reference", "")),
            }
        return {
            "kind": self.kind,
            "name": self.name,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "version": str(getattr(self.cls, "version", "")),
            "plugin": self.plugin.name,
            "distribution": self.plugin.distribution,
            "distribution_version": self.plugin.version,
            "description": getattr(self.cls, "description", ""),
            # an explainer's `reference` is a flag (a reference row); a metric's or a
            # classifier's is the citation of its method, shown elsewhere
            "group": ",".join(
                [getattr(self.cls, "family", ""), *sorted(getattr(self.cls, "groups", ()))]
            ).strip(",")
            or ("reference" if getattr(self.cls, "reference", False) is True else ""),
            **extra,
        }


@dataclass
class Registry:
    """The loaded plugins. Build one with :func:`load_registry`."""

    plugins: list[PluginInfo] = field(default_factory=list)
    entries: dict[str, dict[str, Registered]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self.entries[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise BenchError(
                f"unknown {kind} {name!r}{did_you_mean(name, self.names(kind))} "
                f"(installed: {known})",
                f"run `l2i-bench plugins` to list plugins; check {LOAD_PLUGINS_ENV} if it is set",
            ) from None

    def explainer(self, name: str) -> type[Explainer]:
        return self.get("explainer", name).cls

    def dataset(self, name: str) -> type[Dataset]:
        return self.get("dataset", name).cls

    def classifier(self, name: str) -> type[Classifier]:
        return self.get("classifier", name).cls

    def metrics(self) -> list[type[Metric]]:
        return [self.entries["metric"][n].cls for n in self.names("metric")]

    def all_registered(self) -> list[Registered]:
        return [self.entries[k][n] for k in KINDS for n in self.names(k)]

    def add(self, kind: str, cls: Any, plugin: PluginInfo) -> None:
        """Validate and record one class; duplicate names name both plugins."""
        _, base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise BenchError(
                f"plugin {plugin.name!r} (distribution {plugin.distribution}) registered "
                f"{cls!r} as a {kind}, but it is not a subclass of {base.__module__}.{base.__name__}",
                f"make the class inherit from l2i_bench.types.{base.__name__}",
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise BenchError(
                f"plugin {plugin.name!r} (distribution {plugin.distribution}) registered "
                f"{cls.__qualname__} without a `name` class attribute",
                "give the class a unique string attribute `name`",
            )
        table = self.entries[kind]
        if name in table:
            other = table[name].plugin
            raise BenchError(
                f"two plugins register a {kind} named {name!r}: {other.name!r} "
                f"(distribution {other.distribution}) and {plugin.name!r} "
                f"(distribution {plugin.distribution})",
                f"uninstall one of them, or restrict loading with {LOAD_PLUGINS_ENV}",
            )
        table[name] = Registered(kind, name, cls, plugin)


def _selected(ep: EntryPoint, allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    dist = ep.dist.name if ep.dist is not None else ""
    return ep.name in allowed or dist in allowed


def _plugin_info(ep: EntryPoint) -> PluginInfo:
    dist = ep.dist
    return PluginInfo(
        name=ep.name,
        module=ep.value,
        distribution=dist.name if dist is not None else "unknown",
        version=dist.version if dist is not None else "unknown",
    )


def _allowed_from_env() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def load_registry(
    extra_modules: Iterable[tuple[PluginInfo, ModuleType]] = (),
    *,
    group: str = hookspecs.PROJECT_NAME,
) -> Registry:
    """Load every entry point of ``group`` (filtered by the environment), collect what
    each registers, and validate it. ``extra_modules`` lets tests register a module
    object directly without installing a package."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    allowed = _allowed_from_env()
    registry = Registry()
    loaded: list[tuple[PluginInfo, ModuleType]] = []
    seen: set[str] = set()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.name in seen or not _selected(ep, allowed):
            continue  # the same distribution can be visible twice on odd sys.paths
        seen.add(ep.name)
        info = _plugin_info(ep)
        try:
            module = ep.load()
        except Exception as err:
            raise BenchError(
                f"plugin {info.name!r} from distribution {info.distribution} {info.version} "
                f"failed to import ({info.module}): {type(err).__name__}: {err}",
                f"reinstall or fix that package, or skip it with {LOAD_PLUGINS_ENV}=<names to load>",
            ) from err
        loaded.append((info, module))
    loaded.extend(extra_modules)
    for info, module in loaded:
        manager.register(module, name=info.name)
        registry.plugins.append(info)
    by_name = {info.name: info for info, _ in loaded}
    for kind, (hook_name, _) in KINDS.items():
        hook = getattr(manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            info = by_name[impl.plugin_name]
            register: Callable[[Any], None] = _registrar(registry, kind, info)
            impl.function(register=register)
    return registry


def _registrar(registry: Registry, kind: str, info: PluginInfo) -> Callable[[Any], None]:
    def register(cls: Any) -> None:
        registry.add(kind, cls, info)

    return register
