"""`genlab anomaly ckpt=PATH`: anomaly detection by reconstruction error, as in the lecture.

Every image of the split is scored by the model's reconstruction error (VAEs also by their
−ELBO, which adds how unlikely the image's code is under the prior). The images are those
of *every* class, even when the checkpoint trained on some (``data.classes``): those classes
are the normal ones, the others the anomalies, and the command reports how well the score
separates them (ROC curve, AUROC). Writes ``scores.csv``, ``scores_by_class.png`` and
``metrics.json`` (plus ``roc.png`` when there are normal classes).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from genlab.atomic import atomic_path, write_json
from genlab.commands.common import CONFIG_DIR, check_ckpt, check_int, run_command
from genlab.progress import Progress


def normal_classes(classes: Sequence[int | str] | None, class_names: list[str]) -> list[int]:
    """Indices of the classes the checkpoint trained on (given as indices or names); empty
    when it trained on all of them."""
    from genlab.data.datamodule import class_indices

    if classes is None:
        return []
    return sorted(set(class_indices(classes, class_names, source="the checkpoint's data.classes")))


def score_split(
    model: Any,
    dataset: Any,
    *,
    batch_size: int,
    elbo_samples: int,
    seed: int,
    device: Any,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per-image scores [N] of a whole split: ``score`` (reconstruction error) and, for
    models that have one, ``neg_elbo``."""
    import torch

    from genlab.models.capabilities import Variational

    generator = torch.Generator().manual_seed(seed)
    with_elbo = isinstance(model, Variational)
    scores: dict[str, list] = {"score": [], "neg_elbo": []} if with_elbo else {"score": []}
    what = "the reconstruction error" + (
        f" and the −ELBO ({elbo_samples} draws of z)" if with_elbo else ""
    )
    progress = progress or Progress("anomaly", quiet=True)
    indices = torch.arange(len(dataset)).split(batch_size)
    chunks = progress.batches(
        indices, total=len(dataset), phase="scoring", what=f"{what} of {len(dataset)} images"
    )
    with torch.inference_mode():
        for chunk in chunks:
            x, _ = dataset[chunk]
            x = x.to(device)
            scores["score"].append(model.score(x).double().cpu())
            if with_elbo:
                neg_elbo = model.negative_elbo(x, num_samples=elbo_samples, generator=generator)
                scores["neg_elbo"].append(neg_elbo.double().cpu())
    return {name: torch.cat(values).numpy() for name, values in scores.items()}


def write_csv(path: Path, labels: Any, scores: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", *scores])
        for i, label in enumerate(labels):
            writer.writerow([i, int(label), *(f"{values[i]:.8g}" for values in scores.values())])
    return path


def check_options(cfg: DictConfig) -> None:
    check_int(cfg, "elbo_samples", minimum=1, example=10, what="the draws of z per image")
    check_int(cfg, "batch_size", minimum=1, example=500)
    check_int(cfg, "seed")


def anomaly(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    import numpy as np
    import torch

    from genlab.commands import checkpointed
    from genlab.metrics.plots import roc_png, score_histogram_png
    from genlab.metrics.roc import auroc, roc_curve
    from genlab.models.capabilities import ScoresAnomalies, require

    loaded = checkpointed.load(cfg)
    model = loaded.model
    require(model, ScoresAnomalies, to="score images: it has no reconstruction error")
    # Dynamic binarisation draws from the global random stream: seeded, reruns agree.
    torch.manual_seed(cfg.seed)
    dm = checkpointed.unfiltered_datamodule(loaded, cfg.data)
    dataset = checkpointed.split(dm, cfg.split)
    split_name = cfg.split if cfg.split in dm.splits else "val"
    normal = normal_classes(loaded.run_config.data.get("classes"), dm.class_names)
    scores = score_split(
        model,
        dataset,
        batch_size=cfg.batch_size,
        elbo_samples=cfg.elbo_samples,
        seed=cfg.seed,
        device=loaded.device,
        progress=Progress("anomaly", quiet=cfg.get("quiet", False)),
    )
    labels = dataset.labels.numpy()
    out = loaded.output_dir
    csv_path = write_csv(out / "scores.csv", labels, scores)
    name = type(model).__name__
    normal_names = ", ".join(dm.class_names[c] for c in normal)
    histogram = score_histogram_png(
        scores["score"],
        labels,
        class_names=dm.class_names,
        normal=normal,
        title=loaded.title(
            f"reconstruction error of the {split_name} images by class"
            + (f" (trained on {normal_names})" if normal else "")
        ),
        path=out / "scores_by_class.png",
    )

    metrics: dict[str, Any] = {
        "checkpoint": str(Path(cfg.ckpt).expanduser().resolve()),
        "model": name,
        "split": split_name,
        "images": len(labels),
        "normal_classes": normal,
        "mean_score_by_class": {
            dm.class_names[c]: float(scores["score"][labels == c].mean()) for c in np.unique(labels)
        },
    }
    is_anomaly = ~np.isin(labels, normal)
    if normal and is_anomaly.any() and not is_anomaly.all():
        curves = {}
        for score_name, values in scores.items():
            area = auroc(values, is_anomaly)
            metrics["auroc" if score_name == "score" else f"auroc_{score_name}"] = area
            label = "reconstruction error" if score_name == "score" else "−ELBO"
            curves[f"{label} (AUROC {area:.3f})"] = roc_curve(values, is_anomaly)
        roc = roc_png(
            curves,
            title=loaded.title(
                f"ROC of the anomaly scores ({int(is_anomaly.sum())} anomalies; normal: "
                f"{normal_names})"
            ),
            path=out / "roc.png",
        )
        print(f"genlab anomaly: AUROC {metrics['auroc']:.4f} (normal: {normal_names}); {roc}")
    elif normal:
        print("genlab anomaly: no AUROC: the scored images are all normal or all anomalies")
    else:
        print(
            "genlab anomaly: no AUROC: the checkpoint trained on every class, so none is "
            "anomalous; train with data.classes=[...] to set the normal ones"
        )
    write_json(out / "metrics.json", metrics)
    print(f"genlab anomaly: {len(labels)} images scored in {csv_path}; histogram {histogram}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="anomaly")
def main(cfg: DictConfig) -> None:
    run_command(anomaly, cfg)


if __name__ == "__main__":
    main()
