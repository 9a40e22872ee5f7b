"""Every built-in explainer declares the options it reads, once, with a default and help.

The check on the source is static: every call ``option("key")`` / ``_opt("key")`` /
``opt("key")`` in an explainer's class (and the classes it inherits from) names a declared
key, and every declared key is read, so a default cannot hide in the code again. The
context's reading of declared options (cast to the default's type, the dataset's default
resolved, undeclared keys refused) is checked on real values.
"""

from __future__ import annotations

import ast
import inspect
import string
import sys
import textwrap
from collections import defaultdict

import pytest
from explainer_contexts import explainer_context

from l2i_bench.registry import load_registry
from l2i_bench.types import Explainer, ExplainerDefaults, Option, Task, cast_option

BUILT_IN = "l2i_bench.plugins.explainers."
READERS = {"option", "_opt", "opt"}
EXPECTED = {
    "anti-oracle",
    "flint",
    "gradcam",
    "gradient-shap",
    "iba",
    "integrated-gradients",
    "l2i",
    "lmac",
    "loudest",
    "occlusion",
    "oracle",
    "random",
    "saliency",
    "slime",
    "smoothgrad",
    "vibi",
    "wam-ig",
    "wam-sg",
}

REGISTRY = load_registry()
EXPLAINERS = {
    name: REGISTRY.explainer(name)
    for name in REGISTRY.names("explainer")
    if REGISTRY.explainer(name).__module__.startswith(BUILT_IN)
}
DATASET_DEFAULTS = {
    name: REGISTRY.dataset(name).explainer_defaults for name in REGISTRY.names("dataset")
}
ALL_DEFAULTS = {"ExplainerDefaults()": ExplainerDefaults(), **DATASET_DEFAULTS}


def option_reads(tree: ast.AST) -> tuple[set[str], list[str]]:
    """String keys passed first to calls named ``option`` / ``_opt`` / ``opt``, and the
    source of any such call the check refuses: a key that is not a string literal (it
    could not see it) or a default passed at the call (it belongs in the declaration)."""
    keys: set[str] = set()
    opaque: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called not in READERS or not node.args:
            continue
        first = node.args[0]
        literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
        if literal:
            keys.add(first.value)
        if not literal or len(node.args) > 1 or node.keywords:
            opaque.append(ast.unparse(node))
    return keys, opaque


def class_reads(cls: type) -> tuple[set[str], list[str]]:
    """Keys read in the bodies of ``cls`` and of its explainer base classes."""
    keys: set[str] = set()
    opaque: list[str] = []
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, Explainer)) or klass is Explainer:
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        found, unseen = option_reads(tree)
        keys |= found
        opaque += unseen
    return keys, opaque


def test_every_built_in_explainer_is_checked():
    assert set(EXPLAINERS) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_every_key_read_is_declared_and_every_declared_key_is_read(name):
    cls = EXPLAINERS[name]
    keys, opaque = class_reads(cls)
    assert opaque == [], f"{name}: calls with a computed key or a default: {opaque}"
    assert keys == set(cls.options), (
        f"{name}: read but not declared {sorted(keys - set(cls.options))}, "
        f"declared but not read {sorted(set(cls.options) - keys)}"
    )


def test_each_module_reads_only_what_its_classes_declare():
    """Also catches reads outside the class bodies (module-level helpers)."""
    by_module: dict[str, list[type]] = defaultdict(list)
    for cls in EXPLAINERS.values():
        by_module[cls.__module__].append(cls)
    assert len(by_module) >= 15
    for module_name, classes in by_module.items():
        tree = ast.parse(inspect.getsource(sys.modules[module_name]))
        keys, opaque = option_reads(tree)
        assert opaque == [], f"{module_name}: calls with a computed key or a default: {opaque}"
        declared = set().union(*(set(cls.options) for cls in classes))
        assert keys == declared, module_name
        if len(classes) == 1:
            assert keys == set(classes[0].options), module_name


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_declared_options_have_help_and_resolve_to_a_plain_value(name):
    for key, option in EXPLAINERS[name].options.items():
        assert isinstance(option, Option), (name, key)
        assert isinstance(option.help, str) and option.help.strip(), (name, key)
        for where, defaults in ALL_DEFAULTS.items():
            value = option.resolve(defaults)
            assert value is None or type(value) in (int, float, str, bool), (name, key, where)
            if value is None:
                assert "derive" in option.help, f"{name}.{key}: say what None derives from"


def test_dataset_dependent_defaults_follow_the_dataset():
    flint, l2i, lmac = EXPLAINERS["flint"], EXPLAINERS["l2i"], EXPLAINERS["lmac"]
    for defaults in ALL_DEFAULTS.values():
        assert flint.options["attributes"].resolve(defaults) == defaults.nmf_components
        assert flint.options["epochs"].resolve(defaults) == defaults.interpreter_epochs
        assert flint.options["lr"].resolve(defaults) == defaults.interpreter_lr
        assert flint.options["threshold"].resolve(defaults) == defaults.relevance_threshold
        assert l2i.options["components"].resolve(defaults) == defaults.nmf_components
        assert l2i.options["strategy"].resolve(defaults) == defaults.dictionary_strategy
        assert l2i.options["epochs"].resolve(defaults) == defaults.interpreter_epochs
        assert l2i.options["lr"].resolve(defaults) == defaults.interpreter_lr
        assert l2i.options["threshold"].resolve(defaults) == defaults.relevance_threshold
        assert lmac.options["epochs"].resolve(defaults) == defaults.interpreter_epochs
    sonyc = DATASET_DEFAULTS["sonyc-ust"]
    assert l2i.options["components"].resolve(sonyc) == 80
    assert l2i.options["strategy"].resolve(sonyc) == "noise_then_class"


def test_dataset_option_overrides_name_declared_options_of_the_right_type():
    for dataset in REGISTRY.names("dataset"):
        cls = REGISTRY.dataset(dataset)
        for explainer, values in cls.explainer_options.items():
            if explainer not in EXPLAINERS:
                continue
            declared = EXPLAINERS[explainer].options
            for key, value in values.items():
                assert key in declared, (dataset, explainer, key)
                default = declared[key].resolve(cls.explainer_defaults)
                cast = cast_option(value, default)
                assert default is None or type(cast) is type(default)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_passes_names_only_declared_options_and_formats_with_the_defaults(name):
    cls = EXPLAINERS[name]
    assert cls.passes.strip(), f"{name} states no cost in passes"
    fields = {field for _, field, _, _ in string.Formatter().parse(cls.passes) if field}
    assert fields <= set(cls.options), (name, sorted(fields - set(cls.options)))
    for defaults in ALL_DEFAULTS.values():
        values = {key: option.resolve(defaults) for key, option in cls.options.items()}
        text = cls.passes.format(**values)
        assert "{" not in text and "}" not in text


def test_passes_strings_use_the_option_fields():
    assert EXPLAINERS["smoothgrad"].passes == "{samples} forward + backward"
    assert EXPLAINERS["integrated-gradients"].passes == "{steps} forward + backward"
    assert EXPLAINERS["slime"].passes == "{samples} forward passes, batched"
    assert EXPLAINERS["wam-ig"].passes.startswith("{steps} x (")
    assert EXPLAINERS["wam-sg"].passes.startswith("{samples} x (")
    iba = EXPLAINERS["iba"]
    values = {key: option.resolve(ExplainerDefaults()) for key, option in iba.options.items()}
    assert iba.passes.format(**values).startswith("10 x 10 forward + backward")


class StubClassifier:
    """What ``explainer_context`` and the explainers' constructors read."""

    def __init__(self, task: Task = Task.MULTICLASS, num_classes: int = 3) -> None:
        self.task, self.num_classes = task, num_classes


def test_option_casts_given_values_to_the_declared_type():
    from l2i_bench.plugins.explainers.smoothgrad import SmoothGradExplainer

    given = SmoothGradExplainer(explainer_context(StubClassifier(), {"samples": "7"}))
    samples = given.context.option("samples")
    assert samples == 7 and type(samples) is int
    noise = SmoothGradExplainer(explainer_context(StubClassifier(), {"noise": "0.3"}))
    assert noise.context.option("noise") == pytest.approx(0.3)
    assert type(noise.context.option("noise")) is float
    plain = SmoothGradExplainer(explainer_context(StubClassifier()))
    assert plain.context.option("samples") == 16 and type(plain.context.option("samples")) is int
    assert plain.context.option("noise") == 0.15


def test_bool_options_parse_yes_no_text():
    from l2i_bench.plugins.explainers.flint import FlintExplainer

    ctx = explainer_context(StubClassifier(), {"warmup": "false"})
    ctx.declared = FlintExplainer.options  # what Explainer.__init__ does
    assert ctx.option("warmup") is False
    ctx = explainer_context(StubClassifier())
    ctx.declared = FlintExplainer.options
    assert ctx.option("warmup") is True


def test_undeclared_option_raises_key_error():
    from l2i_bench.plugins.explainers.l2i import L2IExplainer
    from l2i_bench.plugins.explainers.smoothgrad import SmoothGradExplainer

    explainer = SmoothGradExplainer(explainer_context(StubClassifier()))
    with pytest.raises(KeyError, match="undeclared"):
        explainer.context.option("undeclared")
    l2i = L2IExplainer(explainer_context(StubClassifier(), {"epochz": "3"}))
    assert l2i.context.unused_options() == ["epochz"]
    with pytest.raises(KeyError, match="epochz"):
        l2i.context.option("epochz")


@pytest.mark.parametrize("epochs", [3, 50])
def test_l2i_epochs_default_is_the_datasets_interpreter_budget(epochs):
    from l2i_bench.plugins.explainers.l2i import L2IExplainer

    defaults = ExplainerDefaults(interpreter_epochs=epochs, nmf_components=epochs + 1)
    l2i = L2IExplainer(explainer_context(StubClassifier(), defaults=defaults))
    assert l2i.context.option("epochs") == epochs
    assert l2i.n_components == epochs + 1
    assert l2i.threshold == defaults.relevance_threshold and l2i.top_k == 5
    given = L2IExplainer(explainer_context(StubClassifier(), {"epochs": "7"}, defaults=defaults))
    assert given.context.option("epochs") == 7


def test_derived_defaults_stay_in_the_code():
    """A ``None`` default returns the given text as is; the method derives the rest."""
    from l2i_bench.plugins.explainers.l2i import L2IExplainer
    from l2i_bench.plugins.explainers.slime import SlimeExplainer

    l2i = L2IExplainer(explainer_context(StubClassifier()))
    assert l2i.context.option("dropout") is None
    given = L2IExplainer(explainer_context(StubClassifier(), {"dropout": "0.1"}))
    assert given.context.option("dropout") == "0.1"

    def keep_share(options):
        return SlimeExplainer(explainer_context(StubClassifier(), options))._settings()[
            "keep_share"
        ]

    assert keep_share({}) == 0.075
    assert keep_share({"segmentation": "temporal"}) == 0.25
    assert keep_share({"segmentation": "spectral"}) == 0.25
    assert keep_share({"segmentation": "temporal", "keep_share": "0.5"}) == 0.5
    settings = SlimeExplainer(explainer_context(StubClassifier(), {"samples": "300"}))._settings()
    assert settings["samples"] == 300 and settings["segment_ms"] is None
    assert settings["bands"] == 4 and settings["perturbations_per_eval"] == 100
