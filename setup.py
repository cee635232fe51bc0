"""Packaging details pyproject.toml cannot say: the top-level configs/ folder is installed
as the data package genlab.configs, so an installed genlab finds its YAML files; genlab's
Hydra plugin (the Optuna sweeper) ships in the namespace package hydra_plugins, where Hydra
looks for plugins."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["genlab", "genlab.*"]),
        "genlab.configs",
        "hydra_plugins.genlab_optuna_sweeper",
    ],
    package_dir={"genlab.configs": "configs"},
)
