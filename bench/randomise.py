"""Cascading randomisation of the classifier's parameters, top layer down.

The model-parameter randomisation test of Adebayo et al. (2018), "Sanity checks for
saliency maps" (NeurIPS), re-initialises a trained network's weights from the logits
layer down, one block more at each step, and asks whether an explanation changes: an
explanation that survives the randomisation of the model it claims to explain does not
depend on that model. :func:`cascade_levels` names the steps of a classifier plugin
top-down (its ``levels``, :class:`l2i_bench.types.Classifier`) and
:func:`randomised_copy` returns the classifier randomised through one of them; the
metric is :mod:`l2i_bench.plugins.metrics.sanity`.

Levels of the built-in ``kumar`` (top-down): ``head`` (L2I's ``FtEx`` head: the 1x1
``head_conv`` and the ``fc`` layer, randomised together as one block: neither alone is
a classifier), ``f1``, ``b6``, ``b5``, ``b4``, ``b3``, ``b2``, ``b1``; the levels
must cover every parameter exactly once. Randomising *through* a level
re-initialises that level and every level above it; the levels below keep their
trained weights and BatchNorm statistics.

Re-initialisation uses each layer's own default (``reset_parameters``: Kaiming-uniform
convolutions and linear layers, BatchNorm ``gamma = 1, beta = 0``), drawn from the CPU
generator seeded by ``(seed, level)`` inside :func:`torch.random.fork_rng`, so:

* the global random state is untouched and the weights are the same on any device;
* the cascade is nested: the copy randomised through ``b4`` holds exactly the random
  head, F1, B6 and B5 weights of the copy randomised through ``b5``, as in Adebayo et
  al.'s cascade, where each step adds one block of randomisation to the previous one.

**BatchNorm of a randomised layer (our choice).** A re-initialised BN layer gets the
default affine (``gamma = 1, beta = 0``), i.e. it standardises, as a BN layer does when
training starts. Its running statistics must describe *its input under the random
weights*; the trained statistics describe another input, and the default ``(0, 1)``
leave activations un-normalised: default-initialised convolutions shrink the signal at
every layer, and a fully randomised KumarCNN with ``(0, 1)`` statistics answers the same
logits for every clip (measured on eight 1 s tone-plus-noise clips: logit spread across
clips 2e-6 against logits of 0.03-0.09, widths 0.125 and 1.0). An explainer of a
constant function has nothing to explain, and the sanity check would pass vacuously.
So, given ``calibration`` log-mel clips, the re-initialised BN layers (and only those:
the trained layers below the cut keep their statistics) recompute their running mean
and variance as a cumulative average over the clips in the randomised network, as the
classifier's own "precise BN" does (:func:`l2i_bench.classifier.recompute_batchnorm_statistics`).
Without ``calibration`` they hold the defaults (mean 0, variance 1, no batches tracked).

Cost: a deep copy of the model plus, with ``calibration``, one forward pass over the
calibration clips (batches of ``batch_size``).
"""

from __future__ import annotations

import copy
import zlib

import torch
from torch import nn

from l2i_bench.classifier import estimate_batchnorm_statistics


def _level_table(model: nn.Module) -> dict[str, tuple[nn.Module, ...]]:
    """Level -> its modules, checking that the levels cover every parameter exactly once."""
    table: dict[str, tuple[nn.Module, ...]] = {}
    levels = tuple(getattr(model, "levels", ()) or ())
    if not levels:
        raise TypeError(
            f"cascading randomisation needs the classifier's `levels`; {type(model).__name__} "
            "declares none (see l2i_bench.types.Classifier)"
        )
    for level, names in levels:
        missing = [name for name in names if not isinstance(getattr(model, name, None), nn.Module)]
        if missing:
            raise TypeError(
                f"{type(model).__name__} declares level {level!r} on {', '.join(missing)}, "
                "which it does not have"
            )
        table[level] = tuple(getattr(model, name) for name in names)
    covered = [id(p) for modules in table.values() for m in modules for p in m.parameters()]
    every = [id(p) for p in model.parameters()]
    if sorted(covered) != sorted(every):
        raise TypeError(
            f"the cascade levels of {type(model).__name__} do not cover each of its "
            "parameters exactly once; fix the classifier plugin's `levels`"
        )
    return table


def cascade_levels(model: nn.Module) -> list[str]:
    """The randomisation levels of ``model``, top-down (``head`` ... ``b1``)."""
    return list(_level_table(model))


def _level_seed(seed: int, level: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(level.encode())) % (2**63)


def _resettable(module: nn.Module) -> list[nn.Module]:
    """Submodules that own parameters or buffers, each of which must be resettable."""
    out = []
    for sub in module.modules():
        owns = any(True for _ in sub.parameters(recurse=False)) or any(
            True for _ in sub.buffers(recurse=False)
        )
        if not owns:
            continue
        if not callable(getattr(sub, "reset_parameters", None)):
            raise TypeError(f"{type(sub).__name__} has parameters but no reset_parameters()")
        out.append(sub)
    return out


def _chunks(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``batch_size`` rows, none of a single row
    (a training-mode BatchNorm cannot take one row when F1's output is 1x1)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def randomised_copy(
    model: nn.Module,
    through: str,
    seed: int,
    *,
    calibration: torch.Tensor | None = None,
    batch_size: int = 32,
) -> nn.Module:
    """A deep copy of ``model`` (eval mode, same device) whose levels from the top down
    to and including ``through`` are re-initialised; ``model`` itself is untouched.

    ``calibration``: log-mel clips ``(B, 1, T, M)`` (``B >= 2``) on which the
    re-initialised BatchNorm layers estimate their running statistics (see the module
    docstring); ``None`` leaves them at the defaults (mean 0, variance 1).
    """
    table = _level_table(model)
    levels = list(table)
    if through not in table:
        raise ValueError(f"unknown randomisation level {through!r}; expected one of {levels}")
    if calibration is not None and calibration.shape[0] < 2:
        raise ValueError(
            f"BatchNorm calibration needs at least 2 clips, got {calibration.shape[0]}"
        )
    device = next(model.parameters()).device
    out = copy.deepcopy(model).cpu()
    out_table = _level_table(out)
    reset: list[nn.Module] = []
    for level in levels[: levels.index(through) + 1]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_level_seed(seed, level))
            for module in out_table[level]:
                for sub in _resettable(module):
                    sub.reset_parameters()
                    reset.append(sub)
    out.to(device)
    out.eval()
    if calibration is not None:
        _calibrate_batchnorm(out, reset, calibration, batch_size)
    return out


def _calibrate_batchnorm(
    model: nn.Module, modules: list[nn.Module], calibration: torch.Tensor, batch_size: int
) -> None:
    """Running statistics of the re-initialised BN layers under the random weights: a
    cumulative average over ``calibration``; the trained layers keep theirs."""
    device = next(model.parameters()).device
    estimate_batchnorm_statistics(
        model,
        (
            calibration[start:stop].to(device)
            for start, stop in _chunks(calibration.shape[0], batch_size)
        ),
        modules,
    )
