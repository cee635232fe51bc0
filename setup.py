"""Packaging details pyproject.toml cannot say: the top-level configs/ folder is installed
as the data package genlab.configs, so an installed genlab finds its YAML files."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["genlab", "genlab.*"]), "genlab.configs"],
    package_dir={"genlab.configs": "configs"},
)
