"""`genlab evaluate ckpt=PATH`: the numbers that compare checkpoints, on the test split.

- reconstruction models: the mean per-image reconstruction error (the model's ``score``,
  summed over pixels) and the per-pixel mean squared error;
- VAEs: the ELBO and the importance-weighted bound on log p(x) with ``k`` draws per image,
  in nats per image;
- models with a prior, given ``features=CKPT`` (a classifier checkpoint): FID, KID,
  precision and recall of ``num_samples`` generated images against the split, and the
  classes they cover; ``features=inception``: the standard Inception FID, where its network
  and weights are installed;
- mode counting (Stacked MNIST): a classifier of 1-channel images on a model of 3-channel
  images of its size classifies each channel, and the modes (100a + 10b + c for digits)
  are the classes: modes covered (at least one sample, the papers' count, of 1000) and
  KL(mode histogram ‖ uniform), over ``num_samples`` (the papers: 26,000); FID, KID and
  precision/recall on the channels' features side by side (genlab.metrics.modes);
- ``probe=true``: a logistic-regression probe fitted on the training split's codes;
- classifiers: their accuracy.

The samples of ``features=`` come from the prior truncated at ``truncation`` when given (see
genlab.latent), and a GAN's from the moving average of G's weights when it keeps one
(``use_ema=false``: from G's own). ``truncation=[1.0,0.7,0.5]`` sweeps the threshold
(BigGAN's fidelity/variety trade-off): the samples of every value, drawn from the same seed,
are measured against the split's features, computed once, and each value's FID, KID,
precision/recall and class coverage go to metrics.json (``sweep``, and as
``truncation_T/NAME`` among the metrics), to the Markdown table truncation.md, to the plot
truncation.png (FID against T, and against the classes' KL to uniform) and to
truncation_samples.png (the first samples of each value, a row each). ``null`` in the list
is the untruncated prior.

Writes ``metrics.json`` and TensorBoard scalars into the run directory and prints a table.
"""

from __future__ import annotations

import math
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
    check_ckpt,
    check_int,
    check_number,
    run_command,
)
from genlab.errors import CheckpointError, ConfigError
from genlab.progress import Progress

# Importance samples per image when a VAE is evaluated without an explicit k.
DEFAULT_K = 100
# The options recorded beside the metrics in metrics.json.
SETTINGS = (
    "likelihood_images",
    "features",
    "num_samples",
    "pr_k",
    "coverage_threshold",
    "probe_labels",
    "seed",
    "use_ema",
)
# The per-value metrics of a truncation sweep, as the columns of truncation.md.
SWEEP_COLUMNS = (
    ("FID", "fid"),
    ("KID", "kid"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("classes covered", "classes_covered"),
    ("KL to uniform", "kl_uniform"),
)
# The samples of each threshold shown in truncation_samples.png, a row each.
SWEEP_SAMPLES_SHOWN = 8


def check_options(cfg: DictConfig) -> None:
    check_int(
        cfg,
        "k",
        optional=True,
        minimum=0,
        example=DEFAULT_K,
        what="the importance samples per image",
    )
    check_int(
        cfg,
        "likelihood_images",
        optional=True,
        minimum=1,
        example=1000,
        what="the test images the likelihood is computed on (null: all)",
    )
    check_int(cfg, "num_samples", minimum=2, example=10000)
    check_int(cfg, "pr_k", minimum=1, example=3)
    check_number(cfg, "coverage_threshold", example=0.1)
    check_bool(cfg, "probe")
    # Its range depends on the training split; the probe checks it.
    check_int(cfg, "probe_labels", optional=True, example=100)
    if cfg.probe_labels is not None and not cfg.probe:
        raise ConfigError("probe_labels=N sets the linear probe's labels; add probe=true")
    check_int(cfg, "batch_size", minimum=1, example=64)
    check_int(cfg, "seed")
    check_bool(cfg, "use_ema")
    values = truncation_sweep_values(cfg)
    if cfg.truncation is not None and cfg.features is None:
        raise ConfigError(
            "truncation changes only the generated samples, which features=PATH/TO/"
            "classifier.ckpt measures; add features= or drop truncation"
        )
    if values is not None and cfg.features == "inception":
        raise ConfigError(
            "a truncation sweep measures FID, KID and class coverage in a classifier's "
            "feature space: pass features=PATH/TO/classifier.ckpt, or one truncation value "
            "with features=inception"
        )


def truncation_sweep_values(cfg: DictConfig) -> list[float | None] | None:
    """The thresholds of ``truncation=[...]``, checked (positive numbers, or null for none,
    each once); None when ``truncation`` is a single value or null."""
    from omegaconf import ListConfig

    from genlab.commands.sample import check_truncation

    value = cfg.truncation
    if not isinstance(value, ListConfig | list):
        check_truncation(value)
        return None
    values = list(value)
    if not values:
        raise ConfigError(
            "truncation=[] sweeps nothing; give thresholds, e.g. truncation=[1.0,0.7,0.5], "
            "or one value"
        )
    for v in values:
        check_truncation(v, key="each value of truncation=[...]")
    if len(set(values)) != len(values):
        raise ConfigError(f"truncation={values} repeats a value; give each threshold once")
    return values


def check_requests(model: Any, cfg: DictConfig) -> None:
    """Refuse what this checkpoint cannot do before any work is done."""
    from genlab.metrics.likelihood import check_variational
    from genlab.models.capabilities import (
        Classifies,
        Decodes,
        Encodes,
        ScoresAnomalies,
        Translates,
        require,
    )

    if cfg.k:
        check_variational(model)
    measurable = isinstance(model, ScoresAnomalies | Classifies | Translates)
    if not (measurable or cfg.features is not None or cfg.probe):
        raise CheckpointError(
            f"a {type(model).__name__} checkpoint has no reconstruction error or likelihood "
            "to evaluate; pass features=PATH/TO/classifier.ckpt to measure its samples (FID, "
            "KID, precision/recall, class coverage)"
        )
    if cfg.features is not None and not isinstance(model, Translates):
        require(model, Decodes, to=f"be evaluated with features={cfg.features}: it has no decoder")
    if cfg.probe:
        require(model, Encodes, to="have its codes probe=true'd: it has no encoder")
    if cfg.truncation is not None and isinstance(model, Translates):
        raise ConfigError(
            f"a {type(model).__name__} translates images and draws no latents to truncate; "
            "drop truncation"
        )


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


def batches(
    dataset: Any, *, batch_size: int, device: Any, indices: Any | None = None
) -> Iterator[Any]:
    """Images [b, C, H, W] of a split on ``device``, in order: all of them, or those at
    ``indices`` (a sorted index tensor)."""
    import torch

    order = torch.arange(len(dataset)) if indices is None else indices
    for chunk in order.split(batch_size):
        x, _ = dataset[chunk]
        yield x.to(device)


def likelihood_subset(size: int, count: int | None, *, seed: int) -> Any | None:
    """Sorted indices of ``count`` of a split's ``size`` images, drawn by ``seed``; None for
    all of them (``count`` null or not smaller than the split).

    The importance-sampled bound costs k decodes per image, hours for a conv VAE on a whole
    test split on a CPU, so by default it is measured on a subset. The same seed gives the
    same images every time, so figures of two runs or two models compare; a larger count
    keeps the smaller one's images (it takes a longer prefix of the same permutation).
    """
    import torch

    if count is None or count >= size:
        return None
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[:count].sort().values


def subset_record(size: int, indices: Any | None, *, seed: int) -> dict[str, Any]:
    """What metrics.json says about the images the likelihood was measured on."""
    if indices is None:
        return {"images": size, "of": size, "seed": None}
    return {"images": len(indices), "of": size, "seed": seed}


def accuracy_metrics(
    model: Any, dataset: Any, *, batch_size: int, prefix: str, progress: Progress
) -> dict:
    import torch

    images, labels = dataset[torch.arange(len(dataset))]
    what = f"the classifier's predictions on {len(images)} {prefix} images"
    _, predicted = classifier_pass(
        model, images, batch_size=batch_size, progress=progress, phase="accuracy", what=what
    )
    return {f"{prefix}/accuracy": float((predicted == labels).double().mean())}


def classifier_pass(
    classifier: Any, images: Any, *, batch_size: int, progress: Progress, phase: str, what: str
) -> tuple[Any, Any]:
    """``classifier_outputs`` (features [N, F], classes [N]) batch by batch, with a bar."""
    import torch

    from genlab.metrics.features import classifier_outputs

    features, classes = [], []
    for chunk in progress.batches(
        images.split(batch_size), total=len(images), phase=phase, what=what
    ):
        feats, predicted = classifier_outputs(classifier, chunk, batch_size=batch_size)
        features.append(feats)
        classes.append(predicted)
    return torch.cat(features), torch.cat(classes)


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


def score_and_reconstruction_metrics(model: Any, images: Iterator[Any], *, prefix: str) -> dict:
    """``score_metrics`` and ``reconstruction_metrics`` in one pass over the images."""
    import torch

    scores, squared = [], []
    with torch.inference_mode():
        for x in images:
            score, reconstruction = model.score_and_reconstruct(x)
            scores.append(score.double().cpu())
            squared.append((reconstruction - x).square().flatten(1).mean(dim=1).double().cpu())
    return {
        f"{prefix}/recon_error": float(torch.cat(scores).mean()),
        f"{prefix}/mse_per_pixel": float(torch.cat(squared).mean()),
    }


def likelihood_metrics(
    model: Any, images: Iterator[Any], *, k: int, seed: int, prefix: str, max_decodes: int
) -> dict[str, float]:
    """The mean ELBO and importance-weighted log-likelihood bound, nats per image, decoding
    at most ``max_decodes`` images (images times draws of z) per forward pass."""
    import torch

    from genlab.metrics.likelihood import likelihood_bounds

    generator = torch.Generator().manual_seed(seed)
    elbos, bounds = [], []
    for x in images:
        elbo, bound = likelihood_bounds(model, x, k=k, generator=generator, max_decodes=max_decodes)
        elbos.append(elbo.double().cpu())
        bounds.append(bound.double().cpu())
    return {
        f"{prefix}/elbo": float(torch.cat(elbos).mean()),
        f"{prefix}/log_likelihood": float(torch.cat(bounds).mean()),
    }


def sample_metrics(
    fake: Any,
    real: Any,
    extractor: Any,
    *,
    cfg: DictConfig,
    device: Any,
    progress: Progress,
    real_features: Any | None = None,
) -> dict[str, float]:
    """Generated images ``fake`` against ``real`` (both [N, C, H, W] in [0, 1]) in the
    extractor's feature space; ``real_features``, when given, are the classifier's features
    of ``real`` computed before (a truncation sweep computes them once)."""
    from genlab.metrics.features import check_image_shape
    from genlab.metrics.inception import inception_fid
    from genlab.metrics.modes import ChannelwiseClassifier

    if isinstance(extractor, Path):
        progress.announce(
            f"metrics: Inception FID of {len(fake)} samples against {len(real)} images"
        )
        return {
            "samples/fid_inception": inception_fid(real, fake, weights=extractor, device=device)
        }
    check_image_shape(extractor, fake.shape[1:], what="this model's samples")
    if real_features is None:
        real_features = real_feature_pass(real, extractor, cfg=cfg, progress=progress)
    fake_features, fake_classes = classifier_pass(
        extractor,
        fake,
        batch_size=cfg.batch_size,
        progress=progress,
        phase="features (fake)",
        what=f"the classifier's features and classes of the {len(fake)} samples",
    )
    return feature_metrics(
        real_features,
        fake_features,
        fake_classes,
        num_classes=extractor.num_classes,
        cfg=cfg,
        progress=progress,
        modes=isinstance(extractor, ChannelwiseClassifier),
    )


def real_feature_pass(real: Any, extractor: Any, *, cfg: DictConfig, progress: Progress) -> Any:
    """The classifier's features [N, F] of the real images."""
    features, _ = classifier_pass(
        extractor,
        real,
        batch_size=cfg.batch_size,
        progress=progress,
        phase="features (real)",
        what=f"the classifier's features of the {len(real)} real images",
    )
    return features


def feature_metrics(
    real: Any,
    fake: Any,
    fake_classes: Any,
    *,
    num_classes: int,
    cfg: DictConfig,
    progress: Progress,
    modes: bool = False,
) -> dict[str, float]:
    """FID, KID, precision/recall and class coverage of features [N, F]; one bar step each,
    since KID and the k-NN balls of precision/recall are quadratic in N. With ``modes``
    (classes that are the modes of channel-stacked images) the coverage is
    genlab.metrics.modes.mode_summary's, without the per-class shares of 1000 modes."""
    import torch

    from genlab.metrics import coverage_summary, fid, kid, precision_recall
    from genlab.metrics.modes import mode_summary

    def fid_step() -> dict[str, float]:
        return {"samples/fid": fid(real, fake)}

    def kid_step() -> dict[str, float]:
        mean, std = kid(real, fake, seed=cfg.seed)
        return {"samples/kid": mean, "samples/kid_std": std}

    def precision_recall_step() -> dict[str, float]:
        precision, recall = precision_recall(real, fake, k=cfg.pr_k)
        return {"samples/precision": precision, "samples/recall": recall}

    def coverage_step() -> dict[str, float]:
        counts = torch.bincount(fake_classes, minlength=num_classes)
        summarize = mode_summary if modes else coverage_summary
        summary = summarize(counts, threshold=cfg.coverage_threshold)
        return {f"samples/{name}": value for name, value in summary.items()}

    steps = [fid_step, kid_step, precision_recall_step, coverage_step]
    what = (
        f"FID, KID, precision/recall (pr_k={cfg.pr_k}) and class coverage of {len(fake)} "
        f"sample features against {len(real)} real ones"
    )
    metrics: dict[str, float] = {}
    with progress.phase("metrics", what, total=len(steps), unit="metric") as bar:
        for step in steps:
            metrics |= step()
            bar.update()
    return metrics


def probe_metrics(
    model: Any, dm: Any, test: Any, *, cfg: DictConfig, device: Any, progress: Progress
) -> dict:
    from genlab.commands import checkpointed
    from genlab.metrics import linear_probe

    train = dm.splits["train"]
    what = f"encoding the {len(train)} training and {len(test)} test images"
    with progress.phase("probe", what, total=len(train) + len(test)) as bar:
        train_codes, train_labels = checkpointed.encode_split(
            model, train, device=device, batch_size=cfg.batch_size, progress=bar.update
        )
        test_codes, test_labels = checkpointed.encode_split(
            model, test, device=device, batch_size=cfg.batch_size, progress=bar.update
        )
    labelled = "all" if cfg.probe_labels is None else cfg.probe_labels
    # scikit-learn's fit has no callback to drive a bar: the line says what is running.
    progress.announce(f"probe: fitting a logistic regression on {labelled} training codes")
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
    # Per-class shares go to metrics.json and TensorBoard; the table keeps the summary. A
    # sweep's values have their own table (truncation.md, printed with it).
    shown = {
        k: v
        for k, v in results["metrics"].items()
        if "/class_" not in k and not k.startswith("truncation_")
    }
    width = max(map(len, shown), default=0)
    print(
        f"genlab evaluate: {results['model']} on the {results['split']} split "
        f"({results['images']} images)"
    )
    for name, value in shown.items():
        print(f"  {name:<{width}}  {value:.6g}")
    subset = results["settings"].get("likelihood_subset")
    if subset and subset["images"] < subset["of"]:
        # Said beside the figures, so that they are not read as the whole split's.
        print(
            f"  (elbo, log_likelihood: on {subset['images']} of the {subset['of']} images, "
            f"drawn by seed={subset['seed']}; likelihood_images=null for all of them)"
        )


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


def split_metrics(
    model: Any, test: Any, *, cfg: DictConfig, prefix: str, device: Any, progress: Progress
) -> dict[str, float]:
    """What is measured on the split's images themselves: a classifier's accuracy, a
    reconstruction model's error."""
    from genlab.models.capabilities import Classifies, Reconstructs, ScoresAnomalies

    def images(phase: str, what: str) -> Iterator[Any]:
        return progress.batches(
            batches(test, batch_size=cfg.batch_size, device=device),
            total=len(test),
            phase=phase,
            what=f"{what} of the {len(test)} {prefix} images",
        )

    metrics: dict[str, float] = {}
    if isinstance(model, Classifies):
        metrics |= accuracy_metrics(
            model, test, batch_size=cfg.batch_size, prefix=prefix, progress=progress
        )
    if isinstance(model, ScoresAnomalies) and isinstance(model, Reconstructs):
        # One pass over the images for both (one decode, where the model shares it).
        passed = images("reconstruction", "the reconstruction error and squared error per pixel")
        return metrics | score_and_reconstruction_metrics(model, passed, prefix=prefix)
    if isinstance(model, ScoresAnomalies):
        scored = images("score", "the reconstruction error (the anomaly score)")
        metrics |= score_metrics(model, scored, prefix=prefix)
    if isinstance(model, Reconstructs):
        reconstructed = images("reconstruction", "the squared error per pixel")
        metrics |= reconstruction_metrics(model, reconstructed, prefix=prefix)
    return metrics


def likelihood_phase(
    model: Any,
    test: Any,
    subset: Any | None,
    *,
    k: int,
    cfg: DictConfig,
    prefix: str,
    device: Any,
    progress: Progress,
) -> dict[str, float]:
    """The ELBO and the log p(x) bound on the split's images at ``subset`` (None: all)."""
    count = len(test) if subset is None else len(subset)
    images = f"{count} {prefix} images"
    if subset is not None:
        images = (
            f"{count} of the {len(test)} {prefix} images (drawn by seed={cfg.seed}; "
            "likelihood_images=null takes all)"
        )
    what = f"the ELBO and the log p(x) bound with k={k} importance samples on {images}"
    metrics = likelihood_metrics(
        model,
        progress.batches(
            batches(test, batch_size=cfg.batch_size, device=device, indices=subset),
            total=count,
            phase="likelihood",
            what=what,
        ),
        k=k,
        seed=cfg.seed,
        prefix=prefix,
        # batch_size is the images per forward pass here too: on a CPU a conv decoder runs
        # 3 to 4 times faster on 64 images a pass than on 4096 (cache-sized activations).
        max_decodes=cfg.batch_size,
    )
    if model.likelihood == "bernoulli" and not test.binarize:
        print(
            "genlab evaluate: note: a Bernoulli likelihood of grey-level pixels is not a "
            "probability of the images; the nats papers report need data.binarize=true "
            "(in training and here)"
        )
    return metrics


def generated_metrics(
    loaded: Any,
    test: Any,
    extractor: Any,
    *,
    cfg: DictConfig,
    progress: Progress,
    sweep: list[float | None] | None = None,
) -> tuple[Any, dict[str, float], list[str], list[dict[str, Any]]]:
    """``num_samples`` images drawn from the model (truncated at ``cfg.truncation``), and
    their metrics against the split; with ``sweep`` (thresholds), one such set per value,
    their metrics as ``truncation_T/NAME``. Returns the (first) samples, the metrics, the
    classifier's warnings, and the sweep's entries ([] without one)."""
    import torch

    from genlab.commands import checkpointed
    from genlab.metrics.classifier_trust import classifier_reliability
    from genlab.metrics.modes import channelwise, modes_line
    from genlab.metrics.modes import describe as describe_modes
    from genlab.metrics.samples import generate

    source = checkpointed.LatentSource(
        loaded, cfg.data, to=f"be evaluated with features={cfg.features}", progress=progress
    )
    if source.fitted is not None:
        print(f"genlab evaluate: no prior of its own: samples decode a {source.description}")
    # Samples are decoded means (grey levels), so they are compared with the images'
    # intensities even where training binarised them.
    real = test.images.float().div(255)
    if not isinstance(extractor, Path):
        # A 1-channel classifier of channel-stacked images judges each channel: its modes
        # are the classes (Stacked MNIST).
        extractor = channelwise(extractor, tuple(real.shape[1:]))
        if (line := describe_modes(extractor)) is not None:
            print(f"genlab evaluate: {line}")
    real_features = None
    if sweep is not None:
        # Once for every value of the sweep.
        real_features = real_feature_pass(real, extractor, cfg=cfg, progress=progress)
    first, metrics, entries = None, {}, []
    for truncation in [cfg.truncation] if sweep is None else sweep:
        started = time.perf_counter()
        # The same seed for every threshold: the values differ by the truncation alone.
        generator = torch.Generator().manual_seed(cfg.seed)
        note = "" if truncation is None else f"truncated at ±{truncation:g}"
        what = f"decoding {cfg.num_samples} draws from {source.description}"
        what += f", {note}" if note else ""
        with progress.phase("sampling", what, total=cfg.num_samples) as bar:
            fake = generate(
                loaded.model,
                cfg.num_samples,
                generator=generator,
                batch_size=cfg.batch_size,
                latents=lambda n, gen, t=truncation: source.sample(n, truncation=t, generator=gen),
                progress=bar.update,
            )
        measured = sample_metrics(
            fake,
            real,
            extractor,
            cfg=cfg,
            device=loaded.device,
            progress=progress,
            real_features=real_features,
        )
        print(
            f"genlab evaluate: {len(fake)} samples{f' ({note})' if note else ''} drawn and "
            f"measured against {len(real)} images in {time.perf_counter() - started:.1f} s"
        )
        if "samples/modes_covered" in measured:
            counted = {k.removeprefix("samples/"): v for k, v in measured.items()}
            line = modes_line(counted, samples=len(fake), option="num_samples")
            print(f"genlab evaluate: {line}")
        if sweep is None:
            metrics |= measured
        else:
            per_value = {name.removeprefix("samples/"): v for name, v in measured.items()}
            entries.append({"truncation": truncation, "metrics": per_value})
            prefix = f"truncation_{truncation_label(truncation)}"
            metrics |= {f"{prefix}/{name}": v for name, v in per_value.items()}
            entries[-1]["images"] = fake[:SWEEP_SAMPLES_SHOWN]
        if first is None:
            first = fake
    warnings: list[str] = []
    if not isinstance(extractor, Path):
        # How far the classifier's verdict on the samples can be trusted.
        reliability = classifier_reliability(extractor, loaded.model, test.images, test.labels)
        warnings = reliability.pop("warnings")
        metrics |= {
            name.replace("classifier/", "samples/classifier_"): value
            for name, value in reliability.items()
        }
    return first, metrics, warnings, entries


def truncation_label(value: float | None) -> str:
    """A threshold as metric names, the table and the plot show it: '0.5', or 'none'."""
    return "none" if value is None else f"{value:g}"


def sweep_table(entries: list[dict[str, Any]]) -> str:
    """The sweep as a Markdown table, a row per threshold."""
    header = ["truncation", *(title for title, _ in SWEEP_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in entries:
        metrics = entry["metrics"]
        cells = [truncation_label(entry["truncation"])]
        for _, name in SWEEP_COLUMNS:
            value = metrics.get(name)
            if value is None:
                cells.append("–")
            elif name == "kid":
                cells.append(f"{value:.4g} ± {metrics.get('kid_std', 0.0):.2g}")
            elif name == "classes_covered":
                cells.append(f"{value:.0f}")
            else:
                cells.append(f"{value:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_plot(loaded: Any, entries: list[dict[str, Any]], *, path: Path) -> Path:
    """truncation.png: FID against the threshold (the untruncated prior as a dashed line),
    and FID against the classes' KL to uniform, each point named by its threshold: the
    fidelity/variety trade-off."""
    from genlab.viz import pyplot, save_figure, set_title

    plt = pyplot()
    fig, (by_t, by_kl) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    truncated = [e for e in entries if e["truncation"] is not None]
    if truncated:
        ordered = sorted(truncated, key=lambda e: e["truncation"])
        by_t.plot(
            [e["truncation"] for e in ordered],
            [e["metrics"]["fid"] for e in ordered],
            marker="o",
            label="truncated at ±T",
        )
    for entry in entries:
        if entry["truncation"] is None:
            by_t.axhline(
                entry["metrics"]["fid"], linestyle="--", color="grey", label="no truncation"
            )
    by_t.set_xlabel("truncation threshold T (smaller: less variety)")
    by_t.set_ylabel("FID in the classifier's feature space (lower is better)")
    by_t.legend(fontsize=8)
    set_title(by_t, "FID against the truncation threshold", chars=55)
    # The curve runs from the untruncated prior to the tightest threshold.
    ordered = sorted(
        entries, key=lambda e: -math.inf if e["truncation"] is None else -e["truncation"]
    )
    kl = [e["metrics"]["kl_uniform"] for e in ordered]
    fid = [e["metrics"]["fid"] for e in ordered]
    by_kl.plot(kl, fid, marker="o")
    for entry, x, y in zip(ordered, kl, fid, strict=True):
        by_kl.annotate(
            f"T={truncation_label(entry['truncation'])}",
            (x, y),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    by_kl.set_xlabel("KL(sample classes || uniform), nats (higher: fewer classes)")
    by_kl.set_ylabel("FID (lower is better)")
    set_title(by_kl, "fidelity against class variety", chars=55)
    fig.suptitle(loaded.title("the truncation trade-off of its samples"), fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def write_sweep(loaded: Any, entries: list[dict[str, Any]]) -> dict[str, str]:
    """truncation.md, truncation.png and truncation_samples.png in the run directory."""
    from genlab.atomic import write_text
    from genlab.commands.figures import rows_png
    from genlab.viz import GridLabels

    out = loaded.output_dir
    table = sweep_table(entries)
    files = {"table": str(write_text(out / "truncation.md", table))}
    files["plot"] = str(sweep_plot(loaded, entries, path=out / "truncation.png"))
    labels = GridLabels(
        rows=[f"T={truncation_label(e['truncation'])}" for e in entries],
        xlabel="the first samples of each threshold, from the same seed",
    )
    files["samples"] = str(
        rows_png(
            loaded,
            [e["images"] for e in entries],
            labels=labels,
            what="samples by truncation threshold",
            path=out / "truncation_samples.png",
        )
    )
    print("genlab evaluate: truncation sweep\n" + table.rstrip())
    return files


def evaluate(cfg: DictConfig) -> dict[str, float]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    import torch

    from genlab.commands import checkpointed
    from genlab.commands.sample import describe_weights
    from genlab.models.capabilities import Translates, Variational
    from genlab.models.gans.ema import weights_in_use

    progress = Progress("evaluate", quiet=cfg.get("quiet", False))
    loaded = checkpointed.load(cfg)
    model, device = loaded.model, loaded.device
    check_requests(model, cfg)
    weights = weights_in_use(model, use_ema=cfg.use_ema)
    extractor = feature_extractor(cfg, device=device) if cfg.features is not None else None
    # Dynamic binarisation draws pixels from the global random stream: seed it so that
    # evaluating a checkpoint twice gives the same numbers.
    torch.manual_seed(cfg.seed)
    dm = checkpointed.datamodule(loaded, cfg.data)
    test = checkpointed.split(dm, cfg.split)
    prefix = cfg.split if cfg.split in dm.splits else "val"

    if isinstance(model, Translates):
        from genlab.commands.evaluate_translation import translation_metrics

        metrics = translation_metrics(
            loaded, dm, split=prefix, extractor=extractor, cfg=cfg, progress=progress
        )
        # Translation data is never binarised.
        return finish(
            cfg,
            loaded,
            model,
            prefix,
            metrics,
            images=len(test),
            binarized=False,
            k=0,
            subset=None,
        )
    metrics = split_metrics(model, test, cfg=cfg, prefix=prefix, device=device, progress=progress)
    k = cfg.k if cfg.k is not None else DEFAULT_K if isinstance(model, Variational) else 0
    skipped = skipped_likelihood(model, k)
    subset = likelihood_subset(len(test), cfg.likelihood_images, seed=cfg.seed)
    if k:
        metrics |= likelihood_phase(
            model, test, subset, k=k, cfg=cfg, prefix=prefix, device=device, progress=progress
        )
    fake, warnings, sweep, files = None, [], [], {}
    if extractor is not None:
        describe_weights("evaluate", weights)
        fake, sampled, warnings, sweep = generated_metrics(
            loaded,
            test,
            extractor,
            cfg=cfg,
            progress=progress,
            sweep=truncation_sweep_values(cfg),
        )
        metrics |= sampled
        if sweep:
            files = write_sweep(loaded, sweep)
    if cfg.probe:
        metrics |= probe_metrics(model, dm, test, cfg=cfg, device=device, progress=progress)

    return finish(
        cfg,
        loaded,
        model,
        prefix,
        metrics,
        images=len(test),
        binarized=bool(test.binarize),
        k=k,
        subset=subset,
        skipped=skipped,
        fake=fake,
        warnings=warnings,
        weights=weights,
        sweep=sweep,
        sweep_files=files,
    )


def finish(
    cfg: DictConfig,
    loaded: Any,
    model: Any,
    prefix: str,
    metrics: dict[str, float],
    *,
    images: int,
    binarized: bool,
    k: int,
    subset: Any | None,
    skipped: list[str] | None = None,
    fake: Any | None = None,
    warnings: list[str] | None = None,
    weights: str = "trained",
    sweep: list[dict[str, Any]] | None = None,
    sweep_files: dict[str, str] | None = None,
) -> dict[str, float]:
    """metrics.json, the printed table and the warnings of one evaluation; ``weights``
    says which a GAN's samples came from (genlab.models.gans.ema.weights_in_use), ``sweep``
    holds a truncation sweep's entries and ``sweep_files`` its table and figures."""
    from omegaconf import OmegaConf

    from genlab.metrics.classifier_trust import print_warnings

    results = {
        "checkpoint": str(Path(cfg.ckpt).expanduser().resolve()),
        "model": type(model).__name__,
        "split": prefix,
        "images": images,
        "binarized": binarized,
        "settings": {key: cfg[key] for key in SETTINGS}
        | {
            "k": k,
            "likelihood_subset": subset_record(images, subset, seed=cfg.seed) if k else None,
            "truncation": OmegaConf.to_container(cfg.truncation)
            if OmegaConf.is_config(cfg.truncation)
            else cfg.truncation,
            "weights": weights,
        },
        # Metrics this model has but the options turned off, so a reader of metrics.json
        # can tell them from metrics the model lacks.
        "skipped": skipped or [],
        "warnings": warnings or [],
        "metrics": metrics,
    }
    if sweep:
        # Each threshold's metrics by name, in the order given; the figures beside them.
        results["sweep"] = [{k: v for k, v in e.items() if k != "images"} for e in sweep]
        results["sweep_files"] = sweep_files or {}
    path = write_results(results, output_dir=loaded.output_dir, samples=fake)
    print_table(results)
    print_warnings("evaluate", results)
    print(f"genlab evaluate: metrics in {path}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_command(evaluate, cfg)


if __name__ == "__main__":
    main()
