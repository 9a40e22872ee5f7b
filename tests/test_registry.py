"""The plugin host: built-ins arrive through entry points; bad plugins fail clearly."""

from __future__ import annotations

import types

import pytest

from l2i_bench import hookimpl
from l2i_bench.errors import BenchError
from l2i_bench.registry import LOAD_PLUGINS_ENV, PluginInfo, load_registry
from l2i_bench.types import Explainer, Explanation


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def _explainer(explainer_name: str) -> type[Explainer]:
    class Fake(Explainer):
        name = explainer_name

        def explain(self, batch, classes):
            return Explanation(mask=batch.spec.abs() * 0)

    return Fake


INFO = PluginInfo("extra", "tests.extra", "tests-dist", "9.9")


def test_builtins_are_loaded_through_entry_points():
    registry = load_registry()
    names = {r.name: r for r in registry.all_registered()}
    assert "random" in names and "synth" in names
    assert names["random"].plugin.distribution == "l2i-bench"
    assert names["random"].kind == "explainer"


def test_env_var_restricts_loading(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "random")
    registry = load_registry()
    assert registry.names("explainer") == ["random"]
    assert registry.names("dataset") == []
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")
    assert load_registry().all_registered() == []


def test_duplicate_names_name_both_plugins(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "random")

    def register_explainers(register):
        register(_explainer("random"))

    module = _module("dup", register_explainers=register_explainers)
    with pytest.raises(BenchError) as err:
        load_registry([(INFO, module)])
    message = str(err.value)
    assert "'random'" in message and "'extra'" in message and "tests-dist" in message


def test_registering_a_non_explainer_is_refused(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "")

    def register_explainers(register):
        register(object)

    with pytest.raises(BenchError, match="not a subclass"):
        load_registry([(INFO, _module("bad", register_explainers=register_explainers))])


def test_unknown_name_lists_known_ones(monkeypatch):
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "random")
    registry = load_registry()
    with pytest.raises(BenchError, match=r"unknown explainer 'nope' \(installed: random\)"):
        registry.explainer("nope")


def test_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[l2i_bench]\nbroken = broken_module_xyz\n")
    (tmp_path / "broken_module_xyz.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(LOAD_PLUGINS_ENV, "broken")
    with pytest.raises(BenchError) as err:
        load_registry()
    message = str(err.value)
    assert "'broken'" in message and "broken-plugin 1.0" in message and "boom at import" in message


def test_explainer_groups_bring_the_reference_rows():
    from l2i_bench.cli import _explainer_names

    registry = load_registry()
    paper = _explainer_names("paper", registry)
    assert paper == [
        "flint",
        "iba",
        "l2i",
        "slime",
        "vibi",
        "anti-oracle",
        "loudest",
        "oracle",
        "random",
    ]
    attribution = _explainer_names("attribution", registry)
    assert attribution == [
        "gradcam",
        "gradient-shap",
        "integrated-gradients",
        "occlusion",
        "saliency",
        "smoothgrad",
        "wam-ig",
        "wam-sg",
        *paper[5:],
    ]
    # all: every contender (L-MAC belongs to no group), then the references once
    assert (
        _explainer_names("all", registry)
        == sorted({*paper[:5], *attribution[:8], "lmac"}) + paper[5:]
    )
    assert _explainer_names("random,l2i,random", registry) == ["random", "l2i"]
    assert _explainer_names("paper,random", registry) == paper
    with pytest.raises(
        BenchError,
        match=r"unknown explainer 'papers' \(did you mean 'paper'\?\), nor a group "
        r".*groups: all, attribution, paper",
    ):
        _explainer_names("papers", registry)
