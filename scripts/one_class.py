"""The one-class MNIST protocol for several digits, with one Markdown table of AUROCs.

For each digit d: train `experiment=one_class_mnist` on the training images of d alone (one
Hydra multirun over data.classes=[0],[1],...), then `genlab anomaly` on its checkpoint scores
the full test set, d normal and the other nine digits anomalies.

    python scripts/one_class.py --data-root ../shared/datasets/mnist --epochs 5
    python scripts/one_class.py --data-root DIR --digits 0 1 --model vae --out outputs/oc_vae

Writes OUT/train/<n>/ (the runs), OUT/anomaly/digit<d>/ (scores, ROC) and OUT/auroc.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

HEADERS = {"auroc": "AUROC, reconstruction error", "auroc_neg_elbo": "AUROC, −ELBO"}


def genlab_executable() -> str:
    beside = Path(sys.executable).with_name("genlab")
    found = str(beside) if beside.is_file() else shutil.which("genlab")
    if found is None:
        sys.exit("one_class.py: the genlab command is not installed (pip install -e .)")
    return found


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        sys.exit(f"one_class.py: {command[1]} failed with exit status {result.returncode}")


def trained_digit(run_dir: Path) -> int:
    """The digit a run trained on, from the config genlab train saved in its directory."""
    return int(OmegaConf.load(run_dir / "config.yaml").data.classes[0])


def markdown_table(rows: dict[int, dict[str, float]], *, title: str) -> str:
    """One row per digit and one column per AUROC (reconstruction error, −ELBO), then the
    mean of each column."""
    columns = sorted({name for row in rows.values() for name in row}, key=lambda c: c != "auroc")
    header = [HEADERS.get(c, c) for c in columns]
    lines = [
        title,
        "",
        "| digit | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for digit, row in sorted(rows.items()):
        lines.append(f"| {digit} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")
    means = [sum(row[c] for row in rows.values()) / len(rows) for c in columns]
    lines.append("| **mean** | " + " | ".join(f"**{m:.4f}**" for m in means) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="directory with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per digit")
    parser.add_argument(
        "--model", default="conv_ae", help="a genlab model config (conv_ae, ae, vae...)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/one_class"), help="output directory"
    )
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)), choices=range(10))
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    out = args.out.resolve()
    if (out / "train").exists():
        parser.error(f"{out / 'train'} exists already; pass a new --out")
    genlab = genlab_executable()

    sweep = ",".join(f"[{d}]" for d in args.digits)
    run(
        [
            genlab,
            "train",
            "-m",
            "experiment=one_class_mnist",
            f"model={args.model}",
            f"data.root={Path(args.data_root).resolve()}",
            f"data.classes={sweep}",
            f"trainer.max_epochs={args.epochs}",
            "trainer.enable_progress_bar=false",
            "test=false",
            f"hydra.sweep.dir={out / 'train'}",
        ]
    )
    rows: dict[int, dict[str, float]] = {}
    for run_dir in sorted(p for p in (out / "train").iterdir() if (p / "config.yaml").is_file()):
        digit = trained_digit(run_dir)
        anomaly_dir = out / "anomaly" / f"digit{digit}"
        run(
            [
                genlab,
                "anomaly",
                f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}",
                f"hydra.run.dir={anomaly_dir}",
            ]
        )
        metrics = json.loads((anomaly_dir / "metrics.json").read_text())
        rows[digit] = {k: v for k, v in metrics.items() if k.startswith("auroc")}

    table = markdown_table(
        rows,
        title=f"One-class MNIST, {args.model}, {args.epochs} epochs: AUROC on the full test set "
        "(normal = the trained digit)",
    )
    (out / "auroc.md").write_text(table)
    print(table)
    print(f"one_class.py: table in {out / 'auroc.md'}")


if __name__ == "__main__":
    main()
