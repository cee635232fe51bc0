"""One module per `genlab` command: a function of the config plus its Hydra app."""
