"""Explainer options: checked before any work, listed with their defaults per dataset.

Each explainer declares the settings it reads (:class:`l2i_bench.types.Option`); a
dataset may override a default for its data (synth asks SLIME for 300 samples instead
of 1000). Here the host refuses an ``--option`` that names no explainer of the run, a
key the explainer does not declare, or a value that does not parse, with the closest
name as a suggestion, before a classifier is trained or a cell computed: a typo found
after a 5-minute fit costs the fit, and one that is silently ignored costs the result.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from l2i_bench.errors import BenchError, did_you_mean
from l2i_bench.types import Dataset, Explainer, cast_option


def check_options(
    options: Mapping[str, Mapping[str, str]],
    explainers: Sequence[type[Explainer]],
    dataset: type[Dataset],
    *,
    known_explainers: Sequence[str] = (),
) -> None:
    """Refuse what ``--option`` would get wrong: an explainer not in this run (or not
    installed), a key its explainer does not declare, a value of the wrong type.
    Explainers that declare no options (third-party ones may not) are not checked; the
    runner reports their unread options after the cell."""
    by_name = {cls.name: cls for cls in explainers}
    for name, values in options.items():
        cls = by_name.get(name)
        if cls is None:
            if name in known_explainers:
                raise BenchError(
                    f"--option {name}.{next(iter(values))}=...: {name!r} is not among the "
                    f"explainers of this run ({', '.join(by_name)})",
                    f"add {name} to --explainers, or drop the option",
                )
            raise BenchError(
                f"--option {name}.{next(iter(values))}=...: no explainer is called "
                f"{name!r}{did_you_mean(name, [*by_name, *known_explainers])}",
                "write --option EXPLAINER.KEY=VALUE with a name from `l2i-bench plugins`",
            )
        if not cls.options:
            continue
        for key, value in values.items():
            declared = cls.options.get(key)
            if declared is None:
                raise BenchError(
                    f"--option {name}.{key}={value}: {name} has no option {key!r}"
                    f"{did_you_mean(key, list(cls.options))}",
                    f"`l2i-bench plugins --options {name}` lists its options "
                    f"({', '.join(cls.options)})",
                )
            default = declared.resolve(dataset.explainer_defaults)
            try:
                cast_option(value, default)
            except (TypeError, ValueError):
                kind = KINDS.get(type(default), type(default).__name__)
                raise BenchError(
                    f"--option {name}.{key}={value}: not {kind} (default {default!r}: "
                    f"{declared.help})",
                    f"pass {kind}, e.g. --option {name}.{key}={default}",
                ) from None


KINDS = {int: "a whole number", float: "a number", bool: "yes or no", str: "text"}


@dataclass(frozen=True)
class OptionRow:
    name: str
    default: str  # the default, with the datasets that change it
    help: str


def per_dataset(values: Mapping[str, str]) -> str:
    """``1000 (synth: 300)``: the value most datasets share (ESC-50's on a tie), then
    the datasets that differ."""
    counts: dict[str, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    common = max(counts, key=lambda v: (counts[v], v == values.get("esc50")))
    others = [f"{name}: {value}" for name, value in sorted(values.items()) if value != common]
    return f"{common} ({', '.join(others)})" if others else common


def default_for(cls: type[Explainer], key: str, dataset: type[Dataset] | None = None) -> Any:
    """Option ``key``'s default on ``dataset``: the dataset's own ``explainer_options``
    override, else the declared default resolved with its ``explainer_defaults`` (the
    plain defaults without a dataset)."""
    override = dataset.explainer_options.get(cls.name, {}).get(key) if dataset else None
    if override is not None:
        return override
    defaults = dataset.explainer_defaults if dataset else Dataset.explainer_defaults
    return cls.options[key].resolve(defaults)


def _default_text(cls: type[Explainer], key: str, datasets: Sequence[type[Dataset]]) -> str:
    """The default per dataset, ``derived (see help)`` where the method derives it."""
    if not datasets:
        return str(default_for(cls, key))
    values = {d.name: default_for(cls, key, d) for d in datasets}
    return per_dataset(
        {name: "derived (see help)" if v is None else str(v) for name, v in values.items()}
    )


def option_rows(cls: type[Explainer], datasets: Sequence[type[Dataset]]) -> list[OptionRow]:
    """Every declared option of ``cls`` with its default per dataset and its help."""
    return [
        OptionRow(key, _default_text(cls, key, datasets), option.help)
        for key, option in cls.options.items()
    ]


def cost_per_clip(cls: type[Explainer], dataset: type[Dataset] | None = None) -> str:
    """``cls.passes`` with its ``{option}`` fields filled with the defaults of
    ``dataset`` (the plain defaults without one): the README's cost column, from code."""
    fields = {f for _, f, _, _ in string.Formatter().parse(cls.passes) if f}
    return cls.passes.format(**{key: default_for(cls, key, dataset) for key in fields})
