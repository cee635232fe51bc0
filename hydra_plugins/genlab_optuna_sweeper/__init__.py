"""genlab's Optuna sweeper for Hydra (``hydra/sweeper=optuna``); see
``genlab.sweepers.optuna`` for why genlab has its own and how a search runs."""
