"""`genlab evaluate ckpt=PATH`: the numbers that compare checkpoints, on the test split.

- reconstruction models: the mean per-image reconstruction error (the model's ``score``,
  summed over pixels) and the per-pixel mean squared error;
- VAEs: the ELBO and the importance-weighted bound on log p(x) with ``k`` draws per image,
  in nats per image;
- models with a prior, given ``features=CKPT`` (a classifier checkpoint): FID, KID,
  precision and recall of ``num_samples`` generated images against the split, and the
  classes they cover; ``features=inception``: the standard Inception FID, where its network
  and weights are installed;
- ``probe=true``: a logistic-regression probe fitted on the training split's codes;
- classifiers: their accuracy.

Writes ``metrics.json`` and TensorBoard scalars into the run directory and prints a table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from genlab.atomic import write_json
from genlab.commands.common import (
    CONFIG_DIR,
    check_bool,
    check_int,
    check_number,
    run_command,
)
from genlab.errors import CheckpointError, ConfigError

# Importance samples per image when a VAE is evaluated without an explicit k.
DEFAULT_K = 100
# The options recorded beside the metrics in metrics.json.
SETTINGS = ("features", "num_samples", "pr_k", "coverage_threshold", "probe_labels", "seed")


def check_options(cfg: DictConfig) -> None:
    check_int(
        cfg,
        "k",
        optional=True,
        minimum=0,
        example=DEFAULT_K,
        what="the importance samples per image",
    )
    check_int(cfg, "num_samples", minimum=2, example=10000)
    check_int(cfg, "pr_k", minimum=1, example=3)
    check_number(cfg, "coverage_threshold", example=0.1)
    check_bool(cfg, "probe")
    # Its range depends on the training split; the probe checks it.
    check_int(cfg, "probe_labels", optional=True, example=100)
    if cfg.probe_labels is not None and not cfg.probe:
        raise ConfigError("probe_labels=N sets the linear probe's labels; add probe=true")
    check_int(cfg, "batch_size", minimum=1, example=500)
    check_int(cfg, "seed")


def check_requests(model: Any, cfg: DictConfig) -> None:
    """Refuse what this checkpoint cannot do before any work is done."""
    from genlab.metrics.likelihood import check_variational
    from genlab.models.capabilities import Classifies, Decodes, Encodes, ScoresAnomalies, require

    if cfg.k:
        check_variational(model)
    measurable = isinstance(model, ScoresAnomalies | Classifies)
    if not (measurable or cfg.features is not None or cfg.probe):
        raise CheckpointError(
            f"a {type(model).__name__} checkpoint has no reconstruction error or likelihood "
            "to evaluate; pass features=PATH/TO/classifier.ckpt to measure its samples (FID, "
            "KID, precision/recall, class coverage)"
        )
    if cfg.features is not None:
        require(model, Decodes, to=f"be evaluated with features={cfg.features}: it has no decoder")
    if cfg.probe:
        require(model, Encodes, to="have its codes probe=true'd: it has no encoder")


def feature_extractor(cfg: DictConfig, *, device: Any) -> Any:
    """The loaded classifier for ``features=CKPT``, or the Inception weights' path for
    ``features=inception``; checked before any sample is drawn."""
    from genlab.metrics.features import load_classifier
    from genlab.metrics.inception import inception_weights

    if cfg.features == "inception":
        return inception_weights(cfg.inception_weights)
    if not Path(str(cfg.features)).expanduser().is_file():
        raise CheckpointError(
            f"features={cfg.features} does not exist; pass a classifier checkpoint "
            "(genlab train model=classifier) or features=inception"
        )
    return load_classifier(str(cfg.features), device=device)


def batches(dataset: Any, *, batch_size: int, device: Any) -> Iterator[Any]:
    """Images [b, C, H, W] of a split on ``device``, in order."""
    import torch

    for start in range(0, len(dataset), batch_size):
        x, _ = dataset[torch.arange(start, min(start + batch_size, len(dataset)))]
        yield x.to(device)


def accuracy_metrics(model: Any, dataset: Any, *, batch_size: int, prefix: str) -> dict:
    import torch

    from genlab.metrics.features import classifier_outputs

    images, labels = dataset[torch.arange(len(dataset))]
    _, predicted = classifier_outputs(model, images, batch_size=batch_size)
    return {f"{prefix}/accuracy": float((predicted == labels).double().mean())}


def score_metrics(model: Any, images: Iterator[Any], *, prefix: str) -> dict:
    """The mean per-image score (for reconstruction models the reconstruction error, as
    ``score`` defines it: summed over pixels)."""
    import torch

    with torch.inference_mode():
        errors = [model.score(x).double().cpu() for x in images]
    return {f"{prefix}/recon_error": float(torch.cat(errors).mean())}


def reconstruction_metrics(model: Any, images: Iterator[Any], *, prefix: str) -> dict:
    """The mean squared error per pixel of the reconstructions."""
    import torch

    with torch.inference_mode():
        squared = [
            (model.reconstruct(x) - x).square().flatten(1).mean(dim=1).double().cpu()
            for x in images
        ]
    return {f"{prefix}/mse_per_pixel": float(torch.cat(squared).mean())}


def likelihood_metrics(model: Any, images: Iterator[Any], *, k: int, seed: int, prefix: str):
    """The mean ELBO and importance-weighted log-likelihood bound, nats per image."""
    import torch

    from genlab.metrics.likelihood import likelihood_bounds

    generator = torch.Generator().manual_seed(seed)
    elbos, bounds = [], []
    for x in images:
        elbo, bound = likelihood_bounds(model, x, k=k, generator=generator)
        elbos.append(elbo.double().cpu())
        bounds.append(bound.double().cpu())
    return {
        f"{prefix}/elbo": float(torch.cat(elbos).mean()),
        f"{prefix}/log_likelihood": float(torch.cat(bounds).mean()),
    }


def sample_metrics(
    fake: Any, real: Any, extractor: Any, *, cfg: DictConfig, device: Any
) -> dict[str, float]:
    """Generated images ``fake`` against ``real`` (both [N, C, H, W] in [0, 1]) in the
    extractor's feature space."""
    import torch

    from genlab.metrics import coverage_summary, fid, kid, precision_recall
    from genlab.metrics.features import check_image_shape, classifier_outputs
    from genlab.metrics.inception import inception_fid

    if isinstance(extractor, Path):
        return {
            "samples/fid_inception": inception_fid(real, fake, weights=extractor, device=device)
        }
    check_image_shape(extractor, fake.shape[1:], what="this model's samples")
    real_features, _ = classifier_outputs(extractor, real, batch_size=cfg.batch_size)
    fake_features, fake_classes = classifier_outputs(extractor, fake, batch_size=cfg.batch_size)
    kid_mean, kid_std = kid(real_features, fake_features, seed=cfg.seed)
    precision, recall = precision_recall(real_features, fake_features, k=cfg.pr_k)
    counts = torch.bincount(fake_classes, minlength=extractor.num_classes)
    coverage = coverage_summary(counts, threshold=cfg.coverage_threshold)
    return {
        "samples/fid": fid(real_features, fake_features),
        "samples/kid": kid_mean,
        "samples/kid_std": kid_std,
        "samples/precision": precision,
        "samples/recall": recall,
        **{f"samples/{name}": value for name, value in coverage.items()},
    }


def probe_metrics(model: Any, dm: Any, test: Any, *, cfg: DictConfig, device: Any) -> dict:
    from genlab.commands import checkpointed
    from genlab.metrics import linear_probe

    train_codes, train_labels = checkpointed.encode_split(model, dm.splits["train"], device=device)
    test_codes, test_labels = checkpointed.encode_split(model, test, device=device)
    result = linear_probe(
        train_codes,
        train_labels,
        test_codes,
        test_labels,
        num_labels=cfg.probe_labels,
        seed=cfg.seed,
    )
    return {f"probe/{name}": value for name, value in result.items()}


def write_results(results: dict[str, Any], *, output_dir: Path, samples: Any | None) -> Path:
    """metrics.json (through a temporary name) and TensorBoard scalars, with a grid of the
    first generated images when there are any."""
    from torch.utils.tensorboard import SummaryWriter

    from genlab.viz import make_grid

    path = write_json(output_dir / "metrics.json", results)
    writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))
    for name, value in results["metrics"].items():
        writer.add_scalar(name, value, global_step=0)
    if samples is not None:
        writer.add_image("samples", make_grid(samples[:64]), global_step=0)
    writer.close()
    return path


def print_table(results: dict[str, Any]) -> None:
    # Per-class shares go to metrics.json and TensorBoard; the table keeps the summary.
    shown = {k: v for k, v in results["metrics"].items() if "/class_" not in k}
    width = max(map(len, shown))
    print(
        f"genlab evaluate: {results['model']} on the {results['split']} split "
        f"({results['images']} images)"
    )
    for name, value in shown.items():
        print(f"  {name:<{width}}  {value:.6g}")


def skipped_likelihood(model: Any, k: int) -> list[str]:
    """The likelihood metrics k=0 turns off for a Variational model, said aloud, since their
    absence from the table would otherwise look like a model without them."""
    from genlab.models.capabilities import Variational

    if k or not isinstance(model, Variational):
        return []
    print(
        "genlab evaluate: k=0: the ELBO and the log-likelihood bound are skipped; "
        f"k={DEFAULT_K} (the default) computes them"
    )
    return ["elbo", "log_likelihood"]


def evaluate(cfg: DictConfig) -> dict[str, float]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    import torch

    from genlab.commands import checkpointed
    from genlab.metrics.samples import generate
    from genlab.models.capabilities import Classifies, Reconstructs, ScoresAnomalies, Variational

    loaded = checkpointed.load(cfg)
    model, device = loaded.model, loaded.device
    check_requests(model, cfg)
    extractor = feature_extractor(cfg, device=device) if cfg.features is not None else None
    # Dynamic binarisation draws pixels from the global random stream: seed it so that
    # evaluating a checkpoint twice gives the same numbers.
    torch.manual_seed(cfg.seed)
    dm = checkpointed.datamodule(loaded, cfg.data)
    test = checkpointed.split(dm, cfg.split)
    prefix = cfg.split if cfg.split in dm.splits else "val"

    def images() -> Iterator[Any]:
        return batches(test, batch_size=cfg.batch_size, device=device)

    metrics: dict[str, float] = {}
    if isinstance(model, Classifies):
        metrics |= accuracy_metrics(model, test, batch_size=cfg.batch_size, prefix=prefix)
    if isinstance(model, ScoresAnomalies):
        metrics |= score_metrics(model, images(), prefix=prefix)
    if isinstance(model, Reconstructs):
        metrics |= reconstruction_metrics(model, images(), prefix=prefix)
    k = cfg.k if cfg.k is not None else DEFAULT_K if isinstance(model, Variational) else 0
    skipped = skipped_likelihood(model, k)
    if k:
        metrics |= likelihood_metrics(model, images(), k=k, seed=cfg.seed, prefix=prefix)
        if model.likelihood == "bernoulli" and not test.binarize:
            print(
                "genlab evaluate: note: a Bernoulli likelihood of grey-level pixels is not a "
                "probability of the images; the nats papers report need data.binarize=true "
                "(in training and here)"
            )
    fake = None
    if extractor is not None:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed)
        source = checkpointed.LatentSource(
            loaded, cfg.data, to=f"be evaluated with features={cfg.features}"
        )
        if source.fitted is not None:
            print(f"genlab evaluate: no prior of its own: samples decode a {source.description}")
        fake = generate(
            model,
            cfg.num_samples,
            generator=generator,
            batch_size=cfg.batch_size,
            latents=lambda k, gen: source.sample(k, generator=gen),
        )
        # Samples are decoded means (grey levels), so they are compared with the images'
        # intensities even where training binarised them.
        real = test.images.float().div(255)
        metrics |= sample_metrics(fake, real, extractor, cfg=cfg, device=device)
        print(
            f"genlab evaluate: {len(fake)} samples drawn and measured against {len(real)} "
            f"images in {time.perf_counter() - started:.1f} s"
        )
    if cfg.probe:
        metrics |= probe_metrics(model, dm, test, cfg=cfg, device=device)

    results = {
        "checkpoint": str(Path(cfg.ckpt).expanduser().resolve()),
        "model": type(model).__name__,
        "split": prefix,
        "images": len(test),
        "binarized": bool(test.binarize),
        "settings": {key: cfg[key] for key in SETTINGS} | {"k": k},
        # Metrics this model has but the options turned off, so a reader of metrics.json
        # can tell them from metrics the model lacks.
        "skipped": skipped,
        "metrics": metrics,
    }
    path = write_results(results, output_dir=loaded.output_dir, samples=fake)
    print_table(results)
    print(f"genlab evaluate: metrics in {path}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_command(evaluate, cfg)


if __name__ == "__main__":
    main()
