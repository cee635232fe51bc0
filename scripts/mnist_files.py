"""Where the scripts in this folder find MNIST's four IDX files when not told: a light
module (no torch), so that a script's --help stays quick."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where MNIST's IDX files are looked for, in order, when a script is not told (the shared
# folder beside the checkout, one inside it, the data folder).
MNIST_CANDIDATES = (
    ROOT.parent / "shared" / "datasets" / "mnist",
    ROOT / "shared" / "datasets" / "mnist",
    ROOT / "data" / "mnist",
)
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def has_mnist_files(folder: Path) -> bool:
    """Whether ``folder`` holds MNIST's four IDX files, raw or gzipped."""
    return all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in IDX_FILES)
