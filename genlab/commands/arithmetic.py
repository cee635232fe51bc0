"""`genlab arithmetic ckpt=PATH`: latent arithmetic with attribute vectors.

The attribute vector is the mean code of one set minus the mean code of another (two
classes, or two lists of image indices); adding it to the codes of a third set and decoding
shows what the direction encodes. The PNG's rows are the inputs, their plain decodings, and
the decodings after the shift.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.commands.common import CONFIG_DIR, check_ckpt, check_int, check_number, run_command
from genlab.errors import ConfigError

# The sets of images: the vector is mean(plus) - mean(minus), added to the codes of apply.
SETS = ("plus", "minus", "apply")


def select(spec: DictConfig, name: str, labels: Any) -> Any:
    """Indices [k] of the images a set names: ``label`` (a class) or ``indices``."""
    import torch

    label, indices = spec.get("label"), spec.get("indices")
    if (label is None) == (indices is None):
        raise ConfigError(
            f"{name} needs exactly one of {name}.label=CLASS or {name}.indices=[i, j, ...]"
        )
    if label is not None:
        chosen = (labels == int(label)).nonzero().flatten()
        if len(chosen) == 0:
            raise ConfigError(f"{name}.label={label}: no image of that class in the split")
        return chosen
    chosen = torch.tensor(OmegaConf.to_container(indices), dtype=torch.long).flatten()
    if len(chosen) == 0 or chosen.min() < 0 or chosen.max() >= len(labels):
        raise ConfigError(
            f"{name}.indices must be non-empty indices below {len(labels)} (got {indices})"
        )
    return chosen


def describe(spec: DictConfig) -> str:
    """A set as a figure's title names it: its class, or its images' indices."""
    if spec.get("label") is not None:
        return f"class {spec.label}"
    indices = OmegaConf.to_container(spec.indices)
    shown = ", ".join(f"#{i}" for i in indices[:4])
    return f"images {shown}" + (f" (+{len(indices) - 4} more)" if len(indices) > 4 else "")


def check_options(cfg: DictConfig) -> None:
    check_int(cfg, "n", minimum=1, example=8)
    check_number(cfg, "scale", example=1.0)
    for name in SETS:
        check_int(cfg, f"{name}.label", optional=True, minimum=0, example=7, what="a class")
    check_int(cfg, "seed")


def arithmetic(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    import torch

    from genlab.commands import checkpointed
    from genlab.commands.figures import arithmetic_labels, rows_png

    loaded = checkpointed.load(cfg)
    model = loaded.model
    dm = checkpointed.datamodule(loaded, cfg.data)
    split = checkpointed.split_name(dm, cfg.split)
    dataset = checkpointed.split(dm, split)
    sets = {name: select(cfg[name], name, dataset.labels) for name in SETS}

    def mean_code(index: torch.Tensor) -> torch.Tensor:
        images, _ = dataset[index]
        return checkpointed.encode(model, images, device=loaded.device).mean(0)

    vector = mean_code(sets["plus"]) - mean_code(sets["minus"])
    images, _ = dataset[sets["apply"][: cfg.n]]
    codes = checkpointed.encode(model, images, device=loaded.device)
    decoded = checkpointed.decode(model, codes, device=loaded.device)
    shifted = checkpointed.decode(model, codes + cfg.scale * vector, device=loaded.device)

    scale = "" if cfg.scale == 1 else f"{cfg.scale:g}·"
    formula = (
        f"decode(code + {scale}(mean code of {describe(cfg.plus)} − mean code of "
        f"{describe(cfg.minus)})), inputs: {describe(cfg.apply)}"
    )
    png = rows_png(
        loaded,
        [images, decoded, shifted],
        labels=arithmetic_labels(sets["apply"][: cfg.n].tolist(), split),
        what=f"latent arithmetic, shifted = {formula}",
        path=loaded.output_dir / "arithmetic.png",
    )
    tensors = checkpointed.save_tensors(
        {
            "vector": vector,
            "inputs": images,
            "decoded": decoded,
            "shifted": shifted,
            "indices": {k: v for k, v in sets.items()},
        },
        loaded.output_dir / "arithmetic.pt",
    )
    print(
        f"genlab arithmetic: rows input / decoded / shifted in {png}; vector norm "
        f"{vector.norm():.3f}"
    )
    return {"png": str(png), "tensors": str(tensors), "vector_norm": float(vector.norm())}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="arithmetic")
def main(cfg: DictConfig) -> None:
    run_command(arithmetic, cfg)


if __name__ == "__main__":
    main()
