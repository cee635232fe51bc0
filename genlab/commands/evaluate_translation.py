"""`genlab evaluate` on a translator (a model declaring ``Translates``: Pix2Pix, CycleGAN).

- Paired data (Pix2Pix): L1, PSNR and SSIM of each translated test input against its
  target (genlab.metrics.translation), averaged over the split.
- Unpaired data (CycleGAN): the cycle-reconstruction error both ways, L1 of
  G_BA(G_AB(a)) against a and of G_AB(G_BA(b)) against b; on the embedded task, whose right
  answer is known, L1, PSNR and SSIM of G_AB(a) against it; with ``features=CKPT`` (a
  classifier), FID and KID between translated A and real B in the classifier's feature
  space (and the class coverage of the translations), as for generated samples.

Images of another size than the classifier's are resized to it (bilinear, antialiased)
before their features are taken, and the command says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from genlab.data.protocols import KnowsRightAnswers
from genlab.progress import Progress


def _translated(
    model: Any, images: Any, *, direction: str, cfg: DictConfig, device: Any, bar: Any
) -> Any:
    """``model.translate`` of images [N, C, H, W] in [0, 1], batch by batch, on the CPU."""
    import torch

    parts = []
    with torch.inference_mode():
        for chunk in images.split(cfg.batch_size):
            parts.append(model.translate(chunk.to(device), direction).float().cpu())
            bar.update(len(chunk))
    return torch.cat(parts) if parts else images[:0]


def _errors(prefix: str, translated: Any, targets: Any) -> dict[str, float]:
    from genlab.metrics.translation import translation_errors

    errors = translation_errors(translated, targets)
    return {f"{prefix}/{name}": float(values.mean()) for name, values in errors.items()}


def _for_classifier(images: Any, extractor: Any) -> Any:
    """Images at the classifier's size (resized when they differ)."""
    import torch.nn.functional as F

    shape = tuple(extractor.image_shape)
    if tuple(images.shape[2:]) == shape[1:]:
        return images
    return F.interpolate(images, size=shape[1:], mode="bilinear", antialias=True).clamp(0, 1)


def _feature_metrics(
    prefix: str,
    fake: Any,
    real: Any,
    extractor: Any,
    *,
    cfg: DictConfig,
    device: Any,
    progress: Progress,
) -> dict[str, float]:
    from genlab.commands.evaluate import sample_metrics

    # A classifier checkpoint has its image size; Inception (a weights path) resizes itself.
    shape = None if isinstance(extractor, Path) else tuple(extractor.image_shape)
    if shape is not None and tuple(fake.shape[2:]) != shape[1:]:
        print(
            f"genlab evaluate: the classifier takes {shape[1]}x{shape[2]} images: the "
            f"{fake.shape[2]}x{fake.shape[3]} translations and real images are resized to it "
            "for its features"
        )
        fake, real = _for_classifier(fake, extractor), _for_classifier(real, extractor)
    metrics = sample_metrics(fake, real, extractor, cfg=cfg, device=device, progress=progress)
    return {k.replace("samples/", f"{prefix}/"): v for k, v in metrics.items()}


def translation_metrics(
    loaded: Any, dm: Any, *, split: str, extractor: Any, cfg: DictConfig, progress: Progress
) -> dict[str, float]:
    """The metrics of the module docstring on ``split`` of the translation data ``dm``."""
    import torch

    model, device = loaded.model, loaded.device
    model.eval()
    dataset = dm.splits[split]
    # Indexed by a tensor, the split gives float images at the training size (centre-cropped
    # where stored larger); unpaired, index i is (a[i mod Na], b[i mod Nb]).
    a, targets = dataset[torch.arange(len(dataset.a))]
    if not dataset.paired:
        targets = None
    metrics: dict[str, float] = {}

    directions = tuple(model.directions)
    what = f"translating the {len(a)} {split} inputs"
    with progress.phase("translate", what, total=len(a)) as bar:
        fake_b = _translated(model, a, direction="AtoB", cfg=cfg, device=device, bar=bar)

    if directions == ("AtoB",):  # Pix2Pix: the split's pairs are input and target
        if targets is None:
            from genlab.errors import DataError

            raise DataError(
                f"the {split} split of this data holds no (input, target) pairs, so a Pix2Pix "
                "cannot be scored on it; evaluate it on paired data (data=paired_folder)"
            )
        metrics |= _errors(split, fake_b, targets)
        if extractor is not None:
            metrics |= _feature_metrics(
                "translated",
                fake_b,
                targets,
                extractor,
                cfg=cfg,
                device=device,
                progress=progress,
            )
        return metrics

    # CycleGAN: both cycles; the B images of the split (unpaired: its own B domain).
    _, b = dataset[torch.arange(len(dataset.b))]
    what = f"the cycles of the {len(a)} A and {len(b)} B {split} images"
    with progress.phase("cycle", what, total=len(a) + 2 * len(b) + len(a)) as bar:
        back_a = _translated(model, fake_b, direction="BtoA", cfg=cfg, device=device, bar=bar)
        fake_a = _translated(model, b, direction="BtoA", cfg=cfg, device=device, bar=bar)
        back_b = _translated(model, fake_a, direction="AtoB", cfg=cfg, device=device, bar=bar)
    metrics[f"{split}/cycle_a_l1"] = float((back_a - a).abs().mean())
    metrics[f"{split}/cycle_b_l1"] = float((back_b - b).abs().mean())
    answer = dm.right_answer(a) if isinstance(dm, KnowsRightAnswers) else None
    if answer is not None:
        metrics |= _errors(f"{split}/right_answer", fake_b, answer)
    if extractor is not None:
        metrics |= _feature_metrics(
            "translated_a", fake_b, b, extractor, cfg=cfg, device=device, progress=progress
        )
    return metrics
