"""`genlab interpolate ckpt=PATH`: walk the latent space between two codes and decode.

With ``source=data`` the endpoints are the codes of two images of a split (given by
``pairs`` or drawn by ``seed``), and each row shows the first image, the decoded path and the
second image. With ``source=prior`` they are random latents from the model's prior (or, for
plain autoencoders, from a Gaussian fitted to the training codes), truncated at
``truncation`` when given. GANs with a moving average of G's weights decode with it unless
``use_ema=false``.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.commands.common import (
    CONFIG_DIR,
    check_bool,
    check_choice,
    check_ckpt,
    check_int,
    run_command,
)
from genlab.commands.sample import check_truncation, describe_weights
from genlab.errors import ConfigError

SOURCES = ("data", "prior")


def pick_pairs(cfg: DictConfig, size: int) -> list[tuple[int, int]]:
    import torch

    if cfg.pairs is None:
        if size < 2:
            raise ConfigError("the split needs at least two images to interpolate between")
        generator = torch.Generator().manual_seed(cfg.seed)
        return [
            tuple(torch.randperm(size, generator=generator)[:2].tolist())
            for _ in range(cfg.num_pairs)
        ]
    pairs = OmegaConf.to_container(cfg.pairs)
    if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ConfigError(f"pairs must be a list of [i, j] index pairs (got {pairs})")
    for i, j in pairs:
        if not (0 <= i < size and 0 <= j < size):
            raise ConfigError(f"pair [{i}, {j}] is out of range: the split has {size} images")
    return [(int(i), int(j)) for i, j in pairs]


def check_options(cfg: DictConfig) -> None:
    check_choice(cfg, "source", SOURCES)
    check_int(cfg, "num_pairs", minimum=1, example=4)
    check_int(cfg, "steps", minimum=2, example=10, what="the points on each path")
    check_int(cfg, "seed")
    check_bool(cfg, "use_ema")
    check_truncation(cfg.truncation)
    if cfg.truncation is not None and cfg.source != "prior":
        raise ConfigError(
            f"truncation={cfg.truncation} applies to latents drawn from the prior, and "
            f"source={cfg.source} encodes images; add source=prior or drop truncation"
        )


def interpolate(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    import torch

    from genlab.commands import checkpointed
    from genlab.commands.figures import interpolation_labels, rows_png
    from genlab.latent import path_between
    from genlab.models.capabilities import Encodes, require
    from genlab.models.gans.ema import weights_in_use

    loaded = checkpointed.load(cfg)
    model = loaded.model
    weights = weights_in_use(model, use_ema=cfg.use_ema)
    generator = torch.Generator().manual_seed(cfg.seed)

    pairs: list[tuple[int, int]] = []
    if cfg.source == "data":
        require(
            model,
            Encodes,
            to="encode images; use source=prior to interpolate between random latents",
        )
        dm = checkpointed.datamodule(loaded, cfg.data)
        split = checkpointed.split_name(dm, cfg.split)
        dataset = checkpointed.split(dm, split)
        between = f"{split} images"
        pairs = pick_pairs(cfg, len(dataset))
        index = torch.tensor(pairs).flatten()
        images, _ = dataset[index]
        codes = checkpointed.encode(model, images, device=loaded.device)
        starts, stops = codes[0::2], codes[1::2]
    else:
        source = checkpointed.LatentSource(loaded, cfg.data, to="interpolate between latents")
        z = source.sample(2 * cfg.num_pairs, truncation=cfg.truncation, generator=generator)
        split, between = "", f"latents drawn from {source.description}"
        starts, stops = z[0::2], z[1::2]
    paths = torch.stack(
        [
            path_between(a, b, steps=cfg.steps, method=cfg.method)
            for a, b in zip(starts, stops, strict=True)
        ]
    )
    decoded = checkpointed.decode(model, paths.flatten(0, 1), device=loaded.device)
    decoded = decoded.view(len(paths), cfg.steps, *decoded.shape[1:])
    rows = [
        torch.cat([images[2 * k : 2 * k + 1], row, images[2 * k + 1 : 2 * k + 2]])
        if cfg.source == "data"
        else row
        for k, row in enumerate(decoded)
    ]
    labels = interpolation_labels(
        steps=cfg.steps, paths=len(rows), pairs=pairs, split=split, method=cfg.method
    )
    png = rows_png(
        loaded,
        rows,
        labels=labels,
        what=f"{cfg.method} interpolation between {between}",
        path=loaded.output_dir / "interpolation.png",
    )
    tensors = checkpointed.save_tensors(
        {
            "images": decoded,
            "codes": paths,
            "pairs": torch.tensor(pairs, dtype=torch.long),
            "weights": weights,
            "truncation": cfg.truncation,
        },
        loaded.output_dir / "interpolation.pt",
    )
    describe_weights("interpolate", weights)
    print(f"genlab interpolate: {len(rows)} paths of {cfg.steps} steps in {png} and {tensors}")
    return {"png": str(png), "tensors": str(tensors), "pairs": pairs, "weights": weights}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="interpolate")
def main(cfg: DictConfig) -> None:
    run_command(interpolate, cfg)


if __name__ == "__main__":
    main()
