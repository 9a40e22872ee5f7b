"""l2i-bench: a plugin-based benchmark suite for post-hoc explainers of audio classifiers.

The host (this package) knows no concrete explainer, dataset or metric: every one of
them, built-in or third-party, arrives through the ``l2i_bench`` entry-point group and
the hooks in :mod:`l2i_bench.hookspecs`.
"""

from importlib.metadata import PackageNotFoundError, version

from l2i_bench.hookspecs import hookimpl

try:
    __version__ = version("l2i-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "hookimpl"]
