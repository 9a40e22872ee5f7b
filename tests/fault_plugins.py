"""Plugins and a small registry for the fault suite: a tiny synth, a learned explainer
whose fit is cached, explainers that fail in every way a plugin can, and a few cheap
metrics, so that each fault case runs the real runner in seconds."""

from __future__ import annotations

import os
import time
import types
from dataclasses import replace

import torch

from l2i_bench import hookimpl
from l2i_bench.plugins.datasets.synth import Synth
from l2i_bench.plugins.metrics.complexity import MaskComplexity
from l2i_bench.plugins.metrics.coverage import MaskCoverage
from l2i_bench.plugins.metrics.lmac import LMac
from l2i_bench.plugins.metrics.quality import ClassifierAccuracy
from l2i_bench.registry import LOAD_PLUGINS_ENV, PluginInfo, load_registry
from l2i_bench.runner import RunConfig
from l2i_bench.types import Explainer, Explanation

CLASSIFIER = {"epochs": 1, "width": 0.125}


def tiny_config(synth_dir, out, cache, **overrides) -> RunConfig:
    """A run of the tiny synth: fold 1, random and profile, one thread, quiet, no
    listening files; ``overrides`` change any field."""
    fields = dict(
        dataset="synth-tiny",
        explainers=["random", "profile"],
        folds=["1"],
        data_dir=synth_dir,
        device="cpu",
        out=out,
        cache_dir=cache,
        classifier=CLASSIFIER,
        listen=0,
        show_progress=False,
        threads=1,
    )
    fields.update(overrides)
    return RunConfig(**fields)


class TinySynth(Synth):
    """The synth set cut to 20 training, 10 validation and 4 test clips per fold (two
    of each condition): the runner's full path, each run a few seconds."""

    name = "synth-tiny"

    def split(self, fold):
        full = super().split(fold)
        return replace(
            full,
            train=list(full.train)[::16],
            valid=list(full.valid)[::8],
            test=list(full.test)[::20],
            conditions={k: list(v)[::30] for k, v in full.conditions.items()},
        )


class Profile(Explainer):
    """A learned explainer in miniature: ``fit`` stores the mean magnitude per frequency
    of the first training batch (cached like any learned state); the mask keeps the bins
    above it."""

    name = "profile"
    needs_training = True

    def fit(self, train, valid):
        batch = next(iter(train.batches(8)))
        self.profile = batch.magnitude.mean(dim=(0, 2)).float()
        return {"batches": 1, "scale": float(self.profile.mean())}

    def state_dict(self):
        return {"profile": self.profile}

    def load_state_dict(self, state):
        self.profile = state["profile"]

    def explain(self, batch, classes):
        mask = (batch.magnitude >= self.profile.to(batch.magnitude)[None, :, None]).float()
        return Explanation(mask=mask, relevance=mask.mean(dim=1))


def virtual_sleep(seconds: float) -> None:
    """Advance ``time.perf_counter`` of this process by ``seconds`` without waiting.

    The stage profile's clocks all read ``time.perf_counter``, so a virtual sleep shows
    in exactly the stage that took it, and no machine load can move it. Installed on the
    first call in each process (a test's own process restores the real clock with
    ``monkeypatch``; a Ray or pool worker keeps the shifted clock, whose differences stay
    real time plus the sleeps taken inside them)."""
    clock = time.perf_counter
    if not getattr(clock, "virtual", False):
        real = clock
        offset = [0.0]

        def clock() -> float:
            return real() + offset[0]

        clock.virtual = True
        clock.offset = offset
        time.perf_counter = clock
    clock.offset[0] += seconds


class Sleepy(Explainer):
    """Known seconds in each stage, for the stage profile: ``fit`` takes
    :attr:`FIT_SECONDS`, each ``explain`` call :attr:`EXPLAIN_SECONDS`, on the virtual
    clock of :func:`virtual_sleep` (far longer than any real stage of the tiny run, so a
    sleep counted in the wrong stage cannot hide in the machine's noise); keeps the bins
    above the batch's median."""

    name = "sleepy"
    needs_training = True
    FIT_SECONDS = 1000.0
    EXPLAIN_SECONDS = 100.0

    def fit(self, train, valid):
        virtual_sleep(self.FIT_SECONDS)
        self.level = torch.tensor(1.0)
        return {"slept": self.FIT_SECONDS}

    def state_dict(self):
        return {"level": self.level}

    def load_state_dict(self, state):
        self.level = state["level"]

    def explain(self, batch, classes):
        virtual_sleep(self.EXPLAIN_SECONDS)
        magnitude = batch.magnitude
        median = magnitude.flatten(1).median(dim=1).values
        return Explanation(mask=(magnitude >= median[:, None, None]).float())


class Raising(Explainer):
    name = "raising"

    def explain(self, batch, classes):
        raise RuntimeError("boom inside the plugin")


class NaNMask(Explainer):
    name = "nan-mask"

    def explain(self, batch, classes):
        return Explanation(mask=torch.full_like(batch.magnitude, float("nan")))


class WrongShape(Explainer):
    name = "wrong-shape"

    def explain(self, batch, classes):
        return Explanation(mask=torch.ones_like(batch.magnitude)[:, :-1])


class WrongRelevance(Explainer):
    name = "wrong-relevance"

    def explain(self, batch, classes):
        mask = torch.ones_like(batch.magnitude)
        return Explanation(mask=mask, relevance=torch.ones(len(batch), 3, 2))


class Hanging(Explainer):
    name = "hanging"

    def explain(self, batch, classes):
        time.sleep(3600)
        raise AssertionError("unreachable")


FAULTY = (Raising, NaNMask, WrongShape, WrongRelevance, Hanging)


def registry(installed: str = "random,kumar"):
    """synth-tiny, random, profile, the faulty explainers and four cheap metrics, through
    the same registration path as installed plugins; of the installed plugins, only
    ``installed`` (entry-point names)."""
    module = types.ModuleType("fault_plugins")

    def register_datasets(register):
        register(TinySynth)

    def register_explainers(register):
        for cls in (Profile, Sleepy, *FAULTY):
            register(cls)

    def register_metrics(register):
        for cls in (ClassifierAccuracy, MaskCoverage, MaskComplexity, LMac):
            register(cls)

    module.register_datasets = hookimpl(register_datasets)
    module.register_explainers = hookimpl(register_explainers)
    module.register_metrics = hookimpl(register_metrics)
    saved = os.environ.get(LOAD_PLUGINS_ENV)
    os.environ[LOAD_PLUGINS_ENV] = installed
    try:
        return load_registry([(PluginInfo("fault_plugins", "tests", "tests", "0"), module)])
    finally:
        if saved is None:
            os.environ.pop(LOAD_PLUGINS_ENV)
        else:
            os.environ[LOAD_PLUGINS_ENV] = saved
