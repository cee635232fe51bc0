"""Search and scale-out for sweeps (``genlab train -m``): the Optuna search behind
``hydra/sweeper=optuna``, the pruning callback its jobs run, the division of CPU threads
between parallel jobs, and the DDP ranks of a sweep's job.

Hydra only instantiates sweepers defined under the ``hydra_plugins`` package, so the
plugin class itself lives in ``hydra_plugins.genlab_optuna_sweeper``; it is a thin shell
over ``genlab.sweepers.optuna``. Nothing here imports Optuna or torch at import time: Hydra
scans its plugins on every start, ``genlab train --help`` included.
"""

from __future__ import annotations


def register_optuna_sweeper() -> None:
    """Make ``hydra/sweeper=optuna`` known even where Hydra's scan of ``hydra_plugins``
    misses genlab's plugin: an editable install (``pip install -e .``) exposes the package
    through an import hook that the scan (pkgutil) cannot list, though it imports."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.genlab_optuna_sweeper.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)
