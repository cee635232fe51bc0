"""`genlab embed ckpt=PATH`: the lecture's picture of a latent space.

Encodes a split and writes the codes with their labels (``codes.npz``) and a scatter plot
coloured by class (``embedding.png``): 2-D codes directly, larger ones through PCA or t-SNE.
An autoencoder's codes form separate clusters; a VAE's are packed around the origin.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from genlab.atomic import atomic_path
from genlab.commands.common import CONFIG_DIR, check_choice, check_ckpt, check_int, run_command

METHODS = ("pca", "tsne")


def project(codes: Any, *, method: str, seed: int) -> tuple[Any, tuple[str, str]]:
    """2-D coordinates of codes [N, D] and the labels of their two axes."""
    from genlab.latent import pca

    if codes.shape[1] == 1:
        return codes.repeat(1, 2) * codes.new_tensor([1.0, 0.0]), ("z1", "(a 1-D code)")
    if codes.shape[1] == 2:
        return codes, ("z1", "z2")
    if method == "pca":
        points, explained = pca(codes)
        first, second = (100 * explained).tolist()
        return points, (f"PC 1 ({first:.0f}% of the variance)", f"PC 2 ({second:.0f}%)")
    import torch
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (codes.shape[0] - 1) / 3)
    points = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(codes.numpy())
    return torch.from_numpy(points).float(), ("t-SNE 1", "t-SNE 2")


def check_options(cfg: DictConfig) -> None:
    check_choice(cfg, "method", METHODS)
    check_int(cfg, "max_points", minimum=2, example=5000, what="the points plotted")
    check_int(cfg, "seed")


def embed(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    import numpy as np
    import torch

    from genlab.commands import checkpointed
    from genlab.progress import Progress
    from genlab.viz import scatter_png

    progress = Progress("embed", quiet=cfg.get("quiet", False))
    loaded = checkpointed.load(cfg)
    dm = checkpointed.datamodule(loaded, cfg.data)
    dataset = checkpointed.split(dm, cfg.split)
    what = f"the codes of the {len(dataset)} {checkpointed.split_name(dm, cfg.split)} images"
    with progress.phase("encoding", what, total=len(dataset)) as bar:
        codes, labels = checkpointed.encode_split(
            loaded.model, dataset, device=loaded.device, progress=bar.update
        )

    shown = torch.arange(len(codes))
    if len(codes) > cfg.max_points:
        shown = torch.randperm(len(codes), generator=torch.Generator().manual_seed(cfg.seed))
        shown = shown[: cfg.max_points].sort().values
    if cfg.method == "tsne" and codes.shape[1] > 2:
        # scikit-learn's t-SNE has no callback to drive a bar: the line says what runs.
        progress.announce(
            f"t-SNE: a 2-D map of {len(shown)} codes of dimension {codes.shape[1]} "
            "(quadratic in the points; max_points=N lowers them)"
        )
    points, axes = project(codes[shown], method=cfg.method, seed=cfg.seed)

    npz = loaded.output_dir / "codes.npz"
    with atomic_path(npz) as tmp, tmp.open("wb") as f:
        np.savez(
            f,
            codes=codes.numpy(),
            labels=labels.numpy(),
            shown=shown.numpy(),
            projection=points.numpy(),
            class_names=np.array(dm.class_names),
        )
    how = "" if codes.shape[1] <= 2 else {"pca": ", PCA", "tsne": ", t-SNE"}[cfg.method]
    split = checkpointed.split_name(dm, cfg.split)
    png = scatter_png(
        points,
        labels[shown],
        class_names=dm.class_names,
        title=loaded.title(f"{len(shown)} {split} codes ({codes.shape[1]}-D) by class{how}"),
        axis_labels=axes,
        path=loaded.output_dir / "embedding.png",
    )
    print(f"genlab embed: {len(codes)} codes of dimension {codes.shape[1]} in {npz}; plot in {png}")
    return {"npz": str(npz), "png": str(png), "latent_dim": int(codes.shape[1])}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="embed")
def main(cfg: DictConfig) -> None:
    run_command(embed, cfg)


if __name__ == "__main__":
    main()
