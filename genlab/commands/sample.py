"""`genlab sample ckpt=PATH`: draw samples from a trained model.

VAEs (and later GANs) decode draws from their prior N(0, I). Plain autoencoders have no
prior, so a full-covariance Gaussian is fitted to the codes of the training split and
sampled instead: the lecture's point is that this looks worse than a VAE, because an
autoencoder's codes need not fill that Gaussian. ``mode=manifold`` decodes a grid over
[-extent, extent]² for models with 2-D latents (the lecture's manifold figure).
Conditional models (those declaring ``Conditional``, e.g. the cgan) draw the class ``label``, or
cycle through their classes when it is null, one class per column.
Models that grow (``Grows``, e.g. the progan) draw at an earlier growth ``stage`` when it
is given, upsampled to their full size.

``truncation=T`` redraws every entry of z outside [−T, T] (BigGAN's truncation trick; for a
plain autoencoder's fitted Gaussian, of its standardised draw); mode=manifold, a fixed grid,
refuses it. A GAN trained with ``model.ema_decay`` samples from the moving average of G's
weights unless ``use_ema=false``; which weights were used is printed and saved.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from genlab.atomic import write_json
from genlab.commands.common import (
    CONFIG_DIR,
    check_bool,
    check_choice,
    check_ckpt,
    check_int,
    check_number,
    run_command,
)
from genlab.errors import CheckpointError, ConfigError
from genlab.progress import Progress

MODES = ("prior", "manifold")


def check_truncation(value: Any, *, key: str = "truncation") -> None:
    """A truncation threshold: null, or a positive number (checked before torch loads)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            f"{key}, the threshold |z_i| <= T of the prior's draws, must be a positive number "
            f"or null for none (got {value!r}); e.g. {key}=0.5"
        )


def describe_weights(command: str, weights: str) -> None:
    """One line saying which weights a command's images come from, where it matters."""
    from genlab.models.gans.ema import WEIGHTS_DESCRIPTIONS

    if weights != "trained":
        print(f"genlab {command}: generating with {WEIGHTS_DESCRIPTIONS[weights]}")


def check_options(cfg: DictConfig) -> None:
    check_choice(cfg, "mode", MODES)
    check_int(cfg, "n", minimum=1, example=64)
    check_number(cfg, "extent", example=2.0, positive=True)
    check_number(cfg, "temperature", example=1.0)
    check_int(cfg, "label", optional=True, minimum=0, example=7, what="a class index")
    check_int(cfg, "stage", optional=True, minimum=0, example=2, what="a growth stage")
    check_int(cfg, "seed")
    check_bool(cfg, "use_ema")
    check_truncation(cfg.truncation)
    if cfg.truncation is not None and cfg.mode == "manifold":
        raise ConfigError(
            f"truncation={cfg.truncation} applies to draws from a prior, and mode=manifold "
            "decodes a fixed grid; drop truncation, or use mode=prior"
        )


def sample(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    import torch

    from genlab.commands import checkpointed
    from genlab.latent import manifold_grid
    from genlab.models.capabilities import Conditional, Decodes, Grows, require
    from genlab.models.gans.ema import weights_in_use
    from genlab.viz import grid_columns, make_grid, save_png

    loaded = checkpointed.load(cfg)
    model = loaded.model
    require(model, Decodes, to="be sampled: it has no decoder")
    weights = weights_in_use(model, use_ema=cfg.use_ema)
    conditional = isinstance(model, Conditional)
    if cfg.label is not None and not conditional:
        raise ConfigError(
            f"label={cfg.label} needs a conditional model (e.g. model=cgan); this "
            f"{type(model).__name__} is unconditional, drop the label"
        )
    if cfg.stage is not None:
        require(model, Grows, to=f"draw at stage={cfg.stage}: it does not grow in stages")
    generator = torch.Generator().manual_seed(cfg.seed)
    result: dict[str, Any] = {"mode": cfg.mode, "weights": weights, "truncation": cfg.truncation}

    if cfg.mode == "manifold":
        if model.latent_dim != 2:
            raise CheckpointError(
                f"mode=manifold needs a model with a 2-D latent space; this "
                f"{type(model).__name__} has latent_dim={model.latent_dim}. Train one with "
                "model.latent_dim=2, or use mode=prior"
            )
        z = manifold_grid(cfg.n, extent=cfg.extent)
        nrow = cfg.n
    else:
        source = checkpointed.LatentSource(loaded, cfg.data, to="be sampled")
        z = source.sample(
            cfg.n, temperature=cfg.temperature, truncation=cfg.truncation, generator=generator
        )
        if source.fitted is not None:
            result["prior"] = source.description
        nrow = grid_columns(cfg.n)

    saved = {"z": z.cpu()}
    if cfg.stage is not None:
        images = grown_samples(model, z.cpu(), stage=cfg.stage, device=loaded.device)
        result["stage"] = cfg.stage
        result["resolution"] = model.stage_resolution(cfg.stage)
    elif conditional:
        labels = model.class_labels(len(z), cfg.label).cpu()
        images = checkpointed.decode(model, z.cpu(), device=loaded.device, labels=labels)
        saved["labels"] = labels
        if cfg.label is None and cfg.mode == "prior":
            nrow = grid_columns(cfg.n, period=model.num_classes)
    else:
        images = checkpointed.decode(model, z.cpu(), device=loaded.device)
    # samples.png stays free of text, ready for a paper; what needs labels to read gets an
    # annotated figure beside it.
    png = save_png(make_grid(images, nrow=nrow), loaded.output_dir / "samples.png")
    figure = labelled_samples(loaded, images, saved, mode=cfg.mode, nrow=nrow)
    if figure is not None:
        result["figure"] = str(figure)
        print(f"genlab sample: labelled figure in {figure}")
    tensors = checkpointed.save_tensors(
        {"images": images, **saved, "weights": weights, "truncation": cfg.truncation},
        loaded.output_dir / "samples.pt",
    )
    describe_weights("sample", weights)
    print(f"genlab sample: {len(images)} samples in {png} and {tensors}")
    if cfg.classify is not None:
        progress = Progress("sample", quiet=cfg.get("quiet", False))
        real = checkpointed.split(checkpointed.datamodule(loaded, cfg.data), "test")
        result["classes"] = classify(
            cfg.classify,
            images,
            loaded,
            real=(real.images, real.labels),
            progress=progress,
            weights=weights,
        )
    return {**result, "png": str(png), "tensors": str(tensors), "n": len(images)}


def grown_samples(model: Any, z: Any, *, stage: int, device: Any, batch_size: int = 512) -> Any:
    """Images [N, C, H, W] in [0, 1] of codes [N, latent] from a model that grows, drawn at
    its growth ``stage`` and upsampled to its full size, in batches."""
    import torch

    with torch.inference_mode():
        return torch.cat(
            [model.decode(c.to(device), stage=stage).float().cpu() for c in z.split(batch_size)]
        )


def labelled_samples(
    loaded: Any, images: Any, saved: dict[str, Any], *, mode: str, nrow: int
) -> Any:
    """manifold.png (the z1 and z2 of each column and row) for mode=manifold, and
    samples_by_class.png (the classes) for conditional models; None for other samples."""
    from genlab.commands.figures import class_samples_png, manifold_png

    out = loaded.output_dir
    if mode == "manifold":
        return manifold_png(loaded, images, saved["z"], side=nrow, path=out / "manifold.png")
    if "labels" in saved:
        path = out / "samples_by_class.png"
        return class_samples_png(loaded, images, saved["labels"], ncol=nrow, path=path)
    return None


def classify(
    path: str,
    images: Any,
    loaded: Any,
    *,
    real: tuple[Any, Any] | None = None,
    progress: Progress | None = None,
    weights: str | None = None,
) -> dict[str, float]:
    """Class shares of the samples by a classifier checkpoint, written to classes.json: a
    generator that covers few classes has collapsed onto a few modes. With ``real`` test
    images and labels, the classifier's accuracy on them and on the model's reconstructions
    goes beside the shares, with a warning when it is too low to trust the shares.
    ``weights`` (genlab.models.gans.ema.weights_in_use) is recorded beside them.

    A classifier of 1-channel images on 3-channel samples of its size (Stacked MNIST)
    classifies each channel, and the classes are the modes (genlab.metrics.modes): the
    summary is then the modes covered, of 1000, and KL(modes ‖ uniform), with the counts of
    every mode but no per-mode shares."""
    from genlab.metrics.classifier_trust import classifier_reliability, print_warnings
    from genlab.metrics.coverage import class_histogram, coverage_summary
    from genlab.metrics.features import check_image_shape, load_classifier
    from genlab.metrics.modes import ChannelwiseClassifier, channelwise, mode_summary, modes_line
    from genlab.metrics.modes import describe as describe_modes

    classifier = channelwise(load_classifier(path, device=loaded.device), images.shape[1:])
    if (line := describe_modes(classifier)) is not None:
        print(f"genlab sample: {line}")
    check_image_shape(classifier, tuple(images.shape[1:]), what="the samples")
    progress = progress or Progress("sample", quiet=True)
    what = f"the classes of the {len(images)} samples by {path}"
    chunks = progress.batches(images.split(500), total=len(images), phase="classify", what=what)
    counts = sum(class_histogram(classifier, chunk, device=loaded.device) for chunk in chunks)
    modes = isinstance(classifier, ChannelwiseClassifier)
    summary = mode_summary(counts) if modes else coverage_summary(counts)
    report = {**summary, "counts": counts.tolist(), "classifier": str(path)}
    if modes:
        report["samples"] = len(images)
    if weights is not None:
        report["weights"] = weights
    if real is not None:
        reliability = classifier_reliability(classifier, loaded.model, *real)
        report["warnings"] = reliability.pop("warnings")
        report |= reliability
    write_json(loaded.output_dir / "classes.json", report)
    if modes:
        print(f"genlab sample: {modes_line(summary, samples=len(images), option='n')}")
    else:
        shares = ", ".join(f"{k}: {summary[f'class_{k}']:.2f}" for k in range(len(counts)))
        print(
            f"genlab sample: classes covered {summary['classes_covered']:.0f} of {len(counts)}, "
            f"KL(classes || uniform) {summary['kl_uniform']:.3f} nats; shares {shares}"
        )
    if real is not None:
        print(
            f"genlab sample: the classifier is right on {report['classifier/accuracy_real']:.1%}"
            f" of {report['classifier/images']} real test images"
            + (
                f" and {report['classifier/accuracy_reconstructions']:.1%} of the model's "
                "reconstructions of them"
                if "classifier/accuracy_reconstructions" in report
                else ""
            )
        )
        print_warnings("sample", report)
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    run_command(sample, cfg)


if __name__ == "__main__":
    main()
