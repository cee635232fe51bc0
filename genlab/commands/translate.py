"""`genlab translate ckpt=PATH input=DIR|FILE`: translate images with a trained Pix2Pix or
CycleGAN generator.

Every image file of ``input`` (a file, or a folder's image files, not its sub-folders) is
read with Pillow, converted to the generator's channels (grey or RGB), mapped to the
training size, translated and written under the same name (and format) into
``out`` (default: ``translated/`` in the run directory); ``translation.png`` shows the
first ``grid_images`` inputs above their translations (and their targets, for
side-by-side files).

Sizes: the networks were trained on ``image_size`` squares. An image of another size is
resized to the training size, translated, and its translation resized back to the image's
own size (bilinear), and the command says how many it resized; ``resize=false`` refuses
such images instead, naming them. ``side_by_side=true`` reads files that hold A and B side
by side (the Pix2Pix dataset layout, A on the left) and translates the source half: A for
AtoB, B for BtoA (a Pix2Pix trained with ``data.direction=BtoA`` takes B).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from genlab.commands.common import (
    CONFIG_DIR,
    check_bool,
    check_choice,
    check_ckpt,
    check_int,
    run_command,
)
from genlab.errors import ConfigError, DataError

DIRECTIONS = ("AtoB", "BtoA")


def check_options(cfg: DictConfig) -> None:
    check_choice(cfg, "direction", DIRECTIONS)
    check_bool(cfg, "side_by_side")
    check_bool(cfg, "resize")
    check_int(cfg, "grid_images", minimum=0, example=16)
    check_int(cfg, "batch_size", minimum=1, example=16)
    check_int(cfg, "seed")


def input_files(given: str) -> list[Path]:
    """The image files ``input`` names: the file itself, or a folder's image files sorted by
    name; a clear error for anything else."""
    from genlab.data.readers import IMAGE_EXTENSIONS

    path = Path(given).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(
            f"input={given} does not exist; give an image file or a folder of images "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(
            f"input={given} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); sub-folders "
            "are not searched: point input= at the folder that holds the images"
        )
    return files


def read_image(path: Path, *, mode: str, side_by_side: bool, source_left: bool) -> Any:
    """The image at ``path`` as a PIL image of ``mode``, and the other half of a
    side-by-side file (None otherwise)."""
    from genlab.data.translation import open_image, split_side_by_side

    img = open_image(path, mode)
    if not side_by_side:
        return img, None
    left, right = split_side_by_side(img, path)
    return (left, right) if source_left else (right, left)


def check_sizes(files: list[Path], *, size: int, side_by_side: bool, resize: bool) -> list[str]:
    """The names of the files not of the training size (their headers only are read), or,
    with ``resize=false``, an error naming the first: checked before anything is written."""
    from PIL import Image

    other = []
    for path in files:
        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
            raise DataError(
                f"cannot decode image {path} ({type(exc).__name__}: {exc}); delete or replace "
                "it, or move it out of the input folder"
            ) from None
        if side_by_side:
            width //= 2
        if (width, height) != (size, size):
            if not resize:
                raise DataError(
                    f"{'each half of ' if side_by_side else ''}{path} is {width}x{height} "
                    "pixels, "
                    f"and the model was trained on {size}x{size}; drop resize=false to have "
                    "such images resized for the generator and their translations resized back"
                )
            other.append(path.name)
    return other


def to_tensor(img: Any, size: int) -> Any:
    """A PIL image -> float tensor [C, size, size] in [0, 1] (resized when needed)."""
    import numpy as np
    import torch
    from PIL import Image

    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.array(img, dtype=np.uint8)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div(255)


def to_image(x: Any, size: tuple[int, int]) -> Any:
    """A tensor [C, H, W] in [0, 1] -> a PIL image of ``size`` (width, height)."""
    from PIL import Image

    pixels = (x.clamp(0, 1) * 255).round().byte().cpu().numpy()
    img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    if img.size != size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    return img


def save_image(img: Any, path: Path) -> None:
    """Written whole or not at all, in the format its name's extension says."""
    from PIL import Image

    from genlab.atomic import atomic_path

    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    if fmt == "JPEG" and img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt)


def translate(cfg: DictConfig) -> dict[str, Any]:
    # Before torch is imported: a mistyped option or a missing input is answered at once.
    check_options(cfg)
    check_ckpt(cfg)
    files = input_files(str(cfg.input))
    import torch

    from genlab.commands import checkpointed
    from genlab.models.capabilities import Translates, require
    from genlab.progress import Progress
    from genlab.viz import rows_grid, save_png

    progress = Progress("translate", quiet=cfg.get("quiet", False))
    loaded = checkpointed.load(cfg)
    model = loaded.model
    require(model, Translates, to="translate images (train model=pix2pix or model=cyclegan)")
    direction = model.check_direction(cfg.direction)
    model.eval()
    size = int(model.image_size)
    mode = "L" if model.source_channels(direction) == 1 else "RGB"
    data = loaded.run_config.get("data") or {}
    # A side-by-side file holds A left and B right; the source is A unless the Pix2Pix was
    # trained with data.direction=BtoA or a CycleGAN translates BtoA.
    trained_btoa = data.get("direction") == "BtoA" and model.directions == ("AtoB",)
    source_left = (direction == "AtoB") != trained_btoa
    out = Path(cfg.out).expanduser() if cfg.get("out") else loaded.output_dir / "translated"
    if out.resolve() == (files[0].parent.resolve()):
        raise ConfigError(
            f"out={out} is the input folder: the translations would overwrite the inputs; "
            "choose another out="
        )
    resized = check_sizes(files, size=size, side_by_side=cfg.side_by_side, resize=cfg.resize)
    torch.manual_seed(cfg.seed)  # Pix2Pix's dropout noise

    shown: list[list[Any]] = [[], [], []]
    written = []
    what = f"{len(files)} images {direction} with {type(model).__name__}"
    with progress.phase("translate", what, total=len(files)) as bar:
        for start in range(0, len(files), cfg.batch_size):
            chunk = files[start : start + cfg.batch_size]
            sources, targets = [], []
            for path in chunk:
                img, other = read_image(
                    path, mode=mode, side_by_side=cfg.side_by_side, source_left=source_left
                )
                sources.append(img)
                targets.append(other)
            x = torch.stack([to_tensor(img, size) for img in sources]).to(loaded.device)
            with torch.inference_mode():
                y = model.translate(x, direction).float().cpu()
            for path, img, result in zip(chunk, sources, y, strict=True):
                target = out / path.name
                save_image(to_image(result, img.size), target)
                written.append(str(target))
            room = cfg.grid_images - len(shown[0])
            if room > 0:
                shown[0].extend(x[:room].cpu())
                shown[1].extend(y[:room])
                if cfg.side_by_side:
                    shown[2].extend(to_tensor(t, size) for t in targets[:room])
            bar.update(len(chunk))

    result: dict[str, Any] = {"direction": direction, "images": len(written), "out": str(out)}
    if shown[0]:
        rows = [torch.stack(r) for r in shown if r]
        # One row of inputs above one row of outputs (and targets), grid_images wide.
        grid = rows_grid([r.expand(-1, max(t.shape[1] for t in rows), -1, -1) for r in rows])
        png = save_png(grid, loaded.output_dir / "translation.png")
        result["png"] = str(png)
        print(f"genlab translate: side by side in {png}")
    if resized:
        names = ", ".join(resized[:3]) + (", ..." if len(resized) > 3 else "")
        print(
            f"genlab translate: note: {len(resized)} of {len(files)} images were not "
            f"{size}x{size}, the training size ({names}): each was resized to it for the "
            "generator and its translation resized back to the image's own size"
        )
    print(f"genlab translate: {len(written)} translated images in {out}")
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="translate")
def main(cfg: DictConfig) -> None:
    run_command(translate, cfg)


if __name__ == "__main__":
    main()
