"""One way for explainer unit tests to build an ExplainerContext: a test classifier on
CPU, no cache, no progress bars; each test module states only what it varies."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from l2i_bench.audio import FrontEnd
from l2i_bench.types import ExplainerContext, ExplainerDefaults, Task


def explainer_context(
    classifier,
    options: Mapping[str, object] | None = None,
    *,
    seed: int = 0,
    task: Task | None = None,
    defaults: ExplainerDefaults | None = None,
    front_end: FrontEnd | None = None,
    cache_dir: Path = Path("/nonexistent"),
    cache_key: str = "test",
) -> ExplainerContext:
    return ExplainerContext(
        dataset_name="test",
        task=classifier.task if task is None else task,
        class_names=[str(i) for i in range(classifier.num_classes)],
        classifier=classifier,
        front_end=front_end or FrontEnd("cpu"),
        device=torch.device("cpu"),
        seed=seed,
        defaults=defaults or ExplainerDefaults(),
        cache_dir=cache_dir,
        cache_key=cache_key,
        options=dict(options or {}),
        show_progress=False,
    )
